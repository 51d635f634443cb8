"""The bare reference for bench/realtime.py: a `websockets` broadcast server, no framework (the Python limit).

Every connection is in one group; a text frame starting "echo" is answered to
its sender, any other frame is broadcast to every connection, the sender included, as the
Channels baseline does. Run: python bench/bare_websockets.py --port PORT
"""

import argparse
import asyncio

from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    clients.add(ws)
    try:
        async for message in ws:
            if isinstance(message, str) and message.startswith("echo"):
                await ws.send(message)
            else:
                broadcast(clients, message)
    finally:
        clients.discard(ws)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, max_size=1 << 20, compression=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
