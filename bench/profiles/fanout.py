"""Fan-out only, ours only: bench/realtime.py's fan-out cases, with and without negotiated batching.

    REDIS_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/profiles/fanout.py [--batch] [--profile out.txt]

The same server and measure as bench/realtime.py's fan-out table (server CPU per delivery from
/proc over the publish-to-last-receipt window, 500 subscribers x 40 messages and 2,000 x 10),
without the echo, idle and baseline cases, so before/after pairs can run back to back; subscribes
go 40 at a time and retry on `unavailable` (2,000 at once time out on Redis connects when loaded). `--batch` offers the
`webconnect.json.batch.v1` subprotocol and counts the envelopes in each frame; `--profile`
attaches py-spy to the server for the publish-to-receipt window only, one file per case
(out-500.svg, out-2000.svg; .txt: collapsed stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from handshakes import Profiler
from realtime import Servers, close_all, cpu_seconds
from websockets.asyncio.client import ClientConnection, connect

BATCH = "webconnect.json.batch.v1"


async def subscribe(ws: ClientConnection) -> None:
    """Subscribe and wait for the ack; a loaded server may answer `unavailable`: try again."""
    for _ in range(20):
        await ws.send(json.dumps({"header": {"type": "subscribe", "channel": "bench.fan", "id": "s"}}))
        while True:
            header = json.loads(str(await ws.recv()).split("\n", 1)[0])["header"]
            if header["type"] in ("ack", "error") and header.get("id") == "s":
                break
        if header["type"] == "ack":
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("could not subscribe")


async def fan_out_case(
    url: str, headers: dict[str, str], pid: int, subscribers: int, messages: int, *, batch: bool, profile: str | None
) -> dict[str, float]:
    offer = [BATCH] if batch else None
    sockets: list[ClientConnection] = []
    for start in range(0, subscribers, 40):
        opened = await asyncio.gather(
            *(
                connect(url, additional_headers=headers, subprotocols=offer, ping_interval=None, max_size=None)  # type: ignore[arg-type]
                for _ in range(min(40, subscribers - start))
            )
        )
        await asyncio.gather(*(subscribe(ws) for ws in opened))  # bounded: 40 subscribes in flight
        sockets.extend(opened)
    assert all(ws.subprotocol == (BATCH if batch else None) for ws in sockets)
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
    out = Path(profile) if profile else None
    profiler = Profiler(pid, str(out.with_name(f"{out.stem}-{subscribers}{out.suffix}")) if out else None)
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
        profiler.stop()
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
        for subscribers, messages in cases:
            result = await fan_out_case(
                url, headers, ours.pid, subscribers, messages, batch=args.batch, profile=args.profile
            )
            print(
                f"{subscribers} subscribers x {messages}: {result['per_second']:,.0f} deliveries/s, "
                f"{result['cpu_us_per_delivery']:.1f} µs server CPU per delivery, "
                f"{result['envelopes_per_frame']:.1f} envelopes/frame",
                flush=True,
            )
        print(f"load after {os.getloadavg()[0]:.1f}")
    finally:
        servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", metavar="OUT")
    # `timeout` (SIGTERM) still stops the servers this started (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
