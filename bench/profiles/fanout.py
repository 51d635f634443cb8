"""Fan-out only, ours only: bench/realtime.py's fan-out cases, with and without negotiated batching.

    REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/profiles/fanout.py [--batch] [--profile out.txt]

The same server, clients and measure as bench/realtime.py's fan-out table (server CPU per
delivery from /proc, 500 subscribers x 40 messages and 2,000 x 10), without the echo, idle and
baseline cases, so before/after pairs can run back to back. `--batch` offers the
`webconnect.json.batch.v1` subprotocol and counts the envelopes in each frame; `--profile`
attaches py-spy to the server for the fan-out (.txt: collapsed stacks, else a flame graph SVG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handshakes import Profiler
from realtime import Servers, close_all, cpu_seconds, fan_out
from websockets.asyncio.client import ClientConnection, connect

BATCH = "webconnect.json.batch.v1"


async def fan_out_batched(
    url: str, headers: dict[str, str], pid: int, subscribers: int, messages: int
) -> dict[str, float]:
    sockets: list[ClientConnection] = []
    for start in range(0, subscribers, 40):
        sockets.extend(
            await asyncio.gather(
                *(
                    connect(url, additional_headers=headers, subprotocols=[BATCH], ping_interval=None, max_size=None)  # type: ignore[list-item]
                    for _ in range(min(40, subscribers - start))
                )
            )
        )
    assert all(ws.subprotocol == BATCH for ws in sockets)
    for ws in sockets:
        await ws.send(json.dumps({"header": {"type": "subscribe", "channel": "bench.fan", "id": "s"}}))
    for ws in sockets:
        while '"type":"ack"' not in str(await ws.recv()):
            pass
    publisher = await connect(url, additional_headers=headers, ping_interval=None, max_size=None)
    received = [0] * subscribers
    frames = [0]
    done = asyncio.Event()
    remaining = [subscribers]

    async def read(index: int, ws: ClientConnection) -> None:
        while received[index] < messages:
            raw = str(await ws.recv())
            frames[0] += 1
            received[index] += sum(1 for line in raw.split("\n") if '"type":"message"' in line[:40])
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    readers = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(0.5)
    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    for n in range(messages):
        await publisher.send(
            json.dumps({"header": {"type": "publish", "channel": "bench.fan"}, "payload": {"n": n, "pad": "x" * 40}})
        )
    try:
        await asyncio.wait_for(done.wait(), timeout=300)
    finally:
        wall = time.perf_counter() - wall0
        cpu = cpu_seconds(pid) - cpu0
        for reader in readers:
            reader.cancel()
    deliveries = subscribers * messages
    await close_all([*sockets, publisher])
    return {
        "deliveries": deliveries,
        "per_second": deliveries / wall,
        "cpu_us_per_delivery": cpu / deliveries * 1e6,
        "envelopes_per_frame": deliveries / max(1, frames[0]),
    }


async def main_async(args: argparse.Namespace) -> None:
    servers = Servers(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
    try:
        # Opening 2,000 sockets on a loaded machine can outlast the 75 s idle timeout of the first ones.
        servers.env["REALTIME_IDLE_TIMEOUT"] = "3600"
        token = servers.prepare()
        headers = {"Authorization": f"Bearer {token}"}
        ours, port = servers.ours()
        url = f"ws://127.0.0.1:{port}/ws/"
        print(f"load {os.getloadavg()[0]:.1f}, batch={args.batch}")
        cases = ((200, 20),) if args.quick else ((500, 40), (2000, 10))
        profiler = Profiler(ours.pid, args.profile)
        for subscribers, messages in cases:
            if args.batch:
                result = await fan_out_batched(url, headers, ours.pid, subscribers, messages)
            else:
                result = await fan_out(url, headers, ours.pid, subscribers, messages, baseline=False)
            extra = f", {result['envelopes_per_frame']:.1f} envelopes/frame" if args.batch else ""
            print(
                f"{subscribers} subscribers x {messages}: {result['per_second']:,.0f} deliveries/s, "
                f"{result['cpu_us_per_delivery']:.1f} µs server CPU per delivery{extra}",
                flush=True,
            )
        profiler.stop()
        print(f"load after {os.getloadavg()[0]:.1f}")
    finally:
        servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="OUT")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
