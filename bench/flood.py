"""Flood benchmark: one socket sends 10,000 frames as fast as it can; does anybody else notice?

Run on demand (not in CI), with Redis on 127.0.0.1 (services mode: the hub, history and
connection limits on Redis, SQLite for the database):

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/flood.py [--frames 10000]

It starts our server (`manage.py serve`, production settings, the default limits that
migrations install) in a temporary directory, as bench/realtime.py does. A victim socket
(another user) subscribes to a channel and pings every 20 ms; its echo round trips are
measured without a flood, then during each flood from a non-staff user's socket:
- `publish`: publishes into a chat channel the victim subscribes to (the default rate limit,
  50/second per user, refuses most of them with `rate_limited`; the accepted ones reach the victim);
- `ping`: pings (no limit applies: pure frame handling);
- `invalid`: malformed JSON (each answered with `bad_request`).
The flooder reads its answers concurrently, as a real client would. The server is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realtime import Servers, row  # bench/ is not a package

CHANNEL = "chat.flood"


def prepare(servers: Servers) -> tuple[str, str]:
    """The victim (`bench`, staff, from Servers.prepare) and a flooder without staff rights."""
    victim = servers.prepare()
    servers.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; get_user_model().objects.create_user('flooder', password='x')",
    )
    flooder = servers.manage("createtoken", "flooder", "--scopes", "realtime:read realtime:write")
    return victim, flooder


async def victim_echo(ws: ClientConnection, stop: asyncio.Event, interval: float = 0.02) -> list[float]:
    """Ping every `interval` until `stop`; round-trip times in seconds (other frames are skipped)."""
    samples: list[float] = []
    n = 0
    while not stop.is_set():
        n += 1
        started = time.perf_counter()
        await ws.send(json.dumps({"header": {"type": "ping", "id": f"v{n}"}}))
        while True:
            reply = json.loads(await ws.recv())
            if reply["header"]["type"] == "pong" and reply["header"].get("id") == f"v{n}":
                break
        samples.append(time.perf_counter() - started)
        await asyncio.sleep(interval)
    return samples


def flood_frame(kind: str, n: int) -> str:
    if kind == "publish":
        return json.dumps({"header": {"type": "publish", "channel": CHANNEL, "id": n}, "payload": {"n": n}})
    if kind == "ping":
        return json.dumps({"header": {"type": "ping", "id": n}})
    return '{"header": {"type": "publish", "channel"'  # malformed: bad_request


async def flood(url: str, token: str, kind: str, frames: int) -> dict[str, Any]:
    answers: Counter[str] = Counter()
    closed: str | None = None
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None) as ws:

        async def read() -> None:
            nonlocal closed
            try:
                while sum(answers.values()) < frames:
                    frame = json.loads(await ws.recv())
                    header = frame["header"]
                    if header["type"] == "error":
                        answers[frame["payload"]["code"]] += 1
                    elif header["type"] in {"ack", "pong"}:
                        answers[header["type"]] += 1
                    elif header["type"] == "close":
                        closed = f"{frame['payload']['code']} {frame['payload']['reason']}"
            except ConnectionClosed as exc:
                closed = closed or f"closed {exc.rcvd.code if exc.rcvd else None}"

        reader = asyncio.create_task(read())
        started = time.perf_counter()
        try:
            for n in range(frames):
                await ws.send(flood_frame(kind, n))
        except ConnectionClosed:
            pass
        sent_in = time.perf_counter() - started
        await asyncio.wait_for(reader, 120)
        answered_in = time.perf_counter() - started
    return {"sent_s": sent_in, "answered_s": answered_in, "answers": dict(answers), "closed": closed}


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    median = statistics.median(ordered)
    return f"{len(ordered)} | {median * 1000:.1f} ms | {p99 * 1000:.1f} ms | {ordered[-1] * 1000:.1f} ms"


async def main_async(args: argparse.Namespace) -> None:
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    servers = Servers(redis_url)
    servers.env.pop("REALTIME_QUEUE_SIZE", None)  # production's default outgoing queue (1000)
    servers.env.pop("RATE_LIMIT_STORAGE_URI", None)  # rate limits on Redis, as in production
    servers.env["RATE_LIMIT_KEY_PREFIX"] = f"bench-{servers.run}"
    try:
        victim_token, flooder_token = prepare(servers)
        process, port = servers.ours()
        url = f"ws://127.0.0.1:{port}/ws/"
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
        print(f"{args.frames:,} frames per flood; the victim pings every 20 ms\n")
        print(row("case", "victim pings", "p50", "p99", "max", "flood sent in", "all answered in", "flooder got"))
        print(row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---"))
        async with connect(url, additional_headers={"Authorization": f"Bearer {victim_token}"}, max_size=None) as ws:
            await ws.send(json.dumps({"header": {"type": "subscribe", "channel": CHANNEL, "id": "s"}}))
            await ws.recv()
            stop = asyncio.Event()
            task = asyncio.create_task(victim_echo(ws, stop))
            await asyncio.sleep(5)
            stop.set()
            print(row("no flood (5 s)", *summary(await task).split(" | "), "", "", ""))
            for kind in ("publish", "ping", "invalid"):
                await asyncio.sleep(2)
                stop = asyncio.Event()
                task = asyncio.create_task(victim_echo(ws, stop))
                await asyncio.sleep(0.5)
                result = await flood(url, flooder_token, kind, args.frames)
                stop.set()
                got = ", ".join(f"{count:,} {what}" for what, count in sorted(result["answers"].items()))
                if result["closed"]:
                    got += f"; closed: {result['closed']}"
                print(
                    row(
                        f"flood: {kind}",
                        *summary(await task).split(" | "),
                        f"{result['sent_s']:.2f} s",
                        f"{result['answered_s']:.2f} s",
                        got,
                    )
                )
        print(f"\nload average after: {os.getloadavg()[0]:.1f}; server process {process.pid}")
    finally:
        servers.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=10_000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
