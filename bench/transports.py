"""Transports benchmark: bandwidth of MessagePack and permessage-deflate on a dashboard feed, and
the memory a compressed connection costs the server.

    REDIS_URL=redis://127.0.0.1:6379/4 .venv/bin/python bench/transports.py [--readings 500] [--connections 500]

- Bandwidth: the demo producer's sensor readings (dashboards/management/commands/demo_producer.py,
  seed 1) published on one channel; four subscribers (JSON / MessagePack, each with and without
  permessage-deflate) count the bytes that reach their socket (frames and WebSocket headers, after
  the subscribe's ack). Bytes do not depend on the machine's load.
- Memory: N connections opened with deflate offered, each subscribed and sent one message (so
  both its compressor and decompressor exist), against servers with WEBSOCKET_DEFLATE off (the
  control: the offer is declined), on with our defaults (window 2^12, memLevel 5), and on with
  zlib's defaults (2^15, 8). RSS delta per connection of the server process; load-sensitive, so
  the load average is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime import Servers, rss_kib  # bench/ is not a package


def demo_sensors() -> Any:
    """The demo producer's simulated readings (its module needs Django set up to import)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webconnect.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from dashboards.management.commands.demo_producer import Sensors

    return Sensors


CHANNEL = "bench.feed"


class Counted:
    """One subscriber: counts the bytes its socket receives and the messages decoded from them."""

    def __init__(self, ws: ClientConnection, codec: str) -> None:
        self.ws, self.codec = ws, codec
        self.bytes = 0
        self.messages = 0
        receive = ws.data_received

        def counting(data: bytes) -> None:
            self.bytes += len(data)
            receive(data)

        ws.data_received = counting  # type: ignore[method-assign]

    def encode(self, frame: dict[str, Any]) -> str | bytes:
        return bytes(msgpack.packb(frame)) if self.codec == "msgpack" else json.dumps(frame)

    def decode(self, raw: str | bytes) -> dict[str, Any]:
        return dict(msgpack.unpackb(raw) if self.codec == "msgpack" else json.loads(raw))

    async def subscribe(self, channel: str) -> None:
        await self.ws.send(self.encode({"header": {"type": "subscribe", "id": "s", "channel": channel}}))
        while self.decode(await self.ws.recv())["header"]["type"] != "ack":
            pass
        self.bytes = 0

    async def read(self, count: int) -> None:
        while self.messages < count:
            if self.decode(await asyncio.wait_for(self.ws.recv(), 30))["header"]["type"] == "message":
                self.messages += 1


async def open_socket(port: int, token: str, codec: str, deflate: bool) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{port}/ws/",
        additional_headers={"Authorization": f"Bearer {token}"},
        subprotocols=["webconnect.msgpack.v1"] if codec == "msgpack" else None,  # type: ignore[list-item]
        compression="deflate" if deflate else None,
        ping_interval=None,
        max_size=None,
        open_timeout=60,
    )


async def bandwidth(port: int, token: str, readings: int, channel: str) -> dict[str, float]:
    readers = {
        (codec, deflate): Counted(await open_socket(port, token, codec, deflate), codec)
        for codec in ("json", "msgpack")
        for deflate in (False, True)
    }
    for reader in readers.values():
        await reader.subscribe(channel)
    publisher = await open_socket(port, token, "json", False)
    sensors = demo_sensors()(seed=1)
    payload_bytes = 0
    for n in range(readings):
        reading = sensors.reading(time.time())
        payload_bytes += len(json.dumps(reading, separators=(",", ":")))
        await publisher.send(json.dumps({"header": {"type": "publish", "channel": channel}, "payload": reading}))
        if n % 50 == 49:
            await asyncio.sleep(0.05)  # a feed, not a burst: no batching effects
    await asyncio.gather(*(reader.read(readings) for reader in readers.values()))
    result = {f"{codec}{'+deflate' if deflate else ''}": r.bytes / readings for (codec, deflate), r in readers.items()}
    result["payload JSON alone"] = payload_bytes / readings
    for ws in [publisher, *(r.ws for r in readers.values())]:
        await ws.close()
    return result


async def memory(port: int, token: str, pid: int, count: int) -> float:
    before = rss_kib(pid)
    sockets: list[Counted] = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(
            *(open_socket(port, token, "json", True) for _ in range(start, min(count, start + 50)))
        )
        for ws in batch:
            reader = Counted(ws, "json")
            await reader.subscribe("bench.memory")
            sockets.append(reader)
    publisher = await open_socket(port, token, "json", False)
    await publisher.send(
        json.dumps({"header": {"type": "publish", "channel": "bench.memory"}, "payload": demo_sensors()(1).reading(0)})
    )
    await asyncio.gather(*(reader.read(1) for reader in sockets))
    await asyncio.sleep(1)
    after = rss_kib(pid)
    for reader in sockets:
        await reader.ws.close()
    await publisher.close()
    return (after - before) / count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readings", type=int, default=500)
    parser.add_argument("--connections", type=int, default=500)
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        sys.exit("REDIS_URL is required (a Redis for the bench server, say redis://127.0.0.1:6379/4)")
    servers = Servers(redis_url)
    try:
        token = servers.prepare()
        configs = {
            "off (control)": {"WEBSOCKET_DEFLATE": "false"},
            "on, window 2^12, memLevel 5 (defaults)": {"WEBSOCKET_DEFLATE": "true"},
            "on, window 2^15, memLevel 8 (zlib's)": {
                "WEBSOCKET_DEFLATE": "true",
                "WEBSOCKET_DEFLATE_WINDOW_BITS": "15",
                "WEBSOCKET_DEFLATE_MEM_LEVEL": "8",
            },
        }
        print(f"# bench/transports.py: {args.readings} readings, {args.connections} connections\n")
        print(
            "| server deflate | bytes per message on the wire: JSON / MessagePack / JSON+deflate / MessagePack+deflate "
            "| memory per connection, deflate offered | load |"
        )
        print("| --- | --- | --- | --- |")
        for name, extra in configs.items():
            process, port = servers.start(
                [sys.executable, "manage.py", "serve", "--server", "daphne", "--host", "127.0.0.1"],
                {**servers.env, **extra},
            )
            sizes = await bandwidth(port, token, args.readings, f"{CHANNEL}-{len(name)}")
            per_connection = await memory(port, token, process.pid, args.connections)
            load = os.getloadavg()[0]
            wire = " / ".join(f"{sizes[k]:.0f}" for k in ("json", "msgpack", "json+deflate", "msgpack+deflate"))
            print(
                f"| {name} | {wire} (payload alone {sizes['payload JSON alone']:.0f}) "
                f"| {per_connection:.1f} KiB | {load:.2f} |"
            )
            if name.startswith("on, window 2^12"):
                base = sizes["json"]
                saved = {k: 100 * (1 - sizes[k] / base) for k in ("msgpack", "json+deflate", "msgpack+deflate")}
                savings = ", ".join(f"{k} {v:.0f}%" for k, v in saved.items())
            process.terminate()
            process.wait(timeout=15)
        print(f"\nsaved against JSON without compression (defaults): {savings}")
    finally:
        servers.stop()


if __name__ == "__main__":
    asyncio.run(main())
