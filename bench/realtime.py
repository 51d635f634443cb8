"""Real-time benchmark: echo round trips, idle connections, fan-out against a group_send baseline.

Run on demand (not in CI), with Redis on 127.0.0.1 (the baseline needs channels-redis, and
our server runs in services mode so the measured path includes the Redis hop):

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/realtime.py [--quick]
        [--server daphne,uvicorn,granian] [--connections 10000]

It starts, in a temporary directory, our server (`manage.py serve --server S`, SQLite, Redis
hub) under each server named, the baseline (bench/realtime_baseline.py: a plain Channels
consumer using group_send on channels-redis, on Daphne) and a bare `websockets` broadcast
server (bench/bare_websockets.py, the Python limit), drives them from this process with the
`websockets` library, and prints:
- echo (ping -> pong) round trip p50/p99 at 1, 100 and 1,000 concurrent connections;
- idle connections held by one server process and its memory per connection (RSS delta);
- fan-out: deliveries per second (wall clock, until every subscriber has every message) and
  server CPU per delivery (utime+stime of the server's whole process tree; Redis not
  included), with 500 and 2,000 subscribers, and our ratios to bare `websockets` and to the
  baseline;
- with --connections N: N connections held at once (memory per connection) and echo p99 at
  1,000 pings/s across them (REALTIME_IDLE_TIMEOUT=3600 so none idles out while the rest connect).
Every server it starts is stopped at the end (terminate, then kill).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (Granian's process manager, for one, serves from a child)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def cpu_seconds(pid: int) -> float:
    total = 0.0
    for each in tree(pid):
        with suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK
    return total


def rss_kib(pid: int) -> int:
    total = 0
    for each in tree(pid):
        with suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def wait_port(port: int, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited early")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


class Servers:
    def __init__(self, redis_url: str) -> None:
        self.tmp = tempfile.mkdtemp(prefix="webconnect-bench-rt-")
        self.run = secrets.token_hex(4)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webconnect.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "WEBCONNECT_DATA_DIR": self.tmp,
            "REDIS_URL": redis_url,
            "REALTIME_REDIS_PREFIX": f"bench-{self.run}:rt",
            "RATE_LIMIT_STORAGE_URI": "memory://",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "REALTIME_QUEUE_SIZE": "10000",
            "REALTIME_IDLE_TIMEOUT": "3600",
        }
        self.env.pop("DATABASE_URL", None)
        self.processes: list[subprocess.Popen[bytes]] = []

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def prepare(self) -> str:
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model;"
            "from webconnect.models import Namespace;"
            "get_user_model().objects.create_superuser('bench', 'bench@example.com', 'x');"
            "Namespace.objects.create(name='bench', history_size=100, presence=False, join_leave=False);"
            # One user on one IP opening thousands of sockets is the point here: lift the defaults.
            "from policies.models import ConnectionLimitPolicy, RateLimitPolicy;"
            "ConnectionLimitPolicy.objects.filter(name__startswith='default-').update(enabled=False);"
            "RateLimitPolicy.objects.filter(name__startswith='default-').update(enabled=False)",
        )
        return self.manage("createtoken", "bench", "--scopes", "realtime:read realtime:write")

    def start(self, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        log = (Path(self.tmp) / f"server-{port}.log").open("wb")
        process = subprocess.Popen(
            [*argv, "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        wait_port(port, process)
        return process, port

    def ours(self, server: str) -> tuple[subprocess.Popen[bytes], int]:
        if server == "daphne-stock":  # before the lean send path: the Daphne CLI, same limits
            daphne = [PY, "-m", "daphne", "-b", "127.0.0.1", "--websocket-max-message-size", "4194304"]
            return self.start([*daphne, "--ping-interval", "20", "webconnect.asgi:application"], self.env)
        server, _, implementation = server.partition(":")  # uvicorn:wsproto, uvicorn:websockets-sansio
        env = {**self.env, "UVICORN_WS": implementation} if implementation else self.env
        return self.start([PY, "manage.py", "serve", "--server", server, "--host", "127.0.0.1"], env)

    def bare(self) -> tuple[subprocess.Popen[bytes], int]:
        return self.start([PY, str(ROOT / "bench" / "bare_websockets.py")], self.env)

    def baseline(self) -> tuple[subprocess.Popen[bytes], int]:
        env = {**self.env, "PYTHONPATH": str(ROOT / "bench"), "BASELINE_PREFIX": f"bench-baseline-{self.run}"}
        return self.start(
            [
                PY,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "--websocket-max-message-size",
                "1048576",
                "realtime_baseline:application",
            ],
            env,
        )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


async def open_many(url: str, count: int, headers: dict[str, str]) -> list[ClientConnection]:
    sockets: list[ClientConnection] = []

    async def one() -> ClientConnection:
        for attempt in range(5):  # a loaded server sometimes drops a handshake: retry it
            try:
                return await connect(
                    url, additional_headers=headers, ping_interval=None, max_size=None, open_timeout=60
                )
            except (OSError, InvalidHandshake):
                await asyncio.sleep(0.2 * (attempt + 1))
        raise RuntimeError("could not connect")

    # In batches: the baseline's Daphne has a listen backlog of 50.
    for start in range(0, count, 40):
        sockets.extend(await asyncio.gather(*(one() for _ in range(min(40, count - start)))))
    return sockets


async def close_all(sockets: list[ClientConnection]) -> None:
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


# --- Echo ---------------------------------------------------------------------------------


async def echo(url: str, headers: dict[str, str], connections: int, rounds: int, interval: float) -> dict[str, float]:
    """Each connection pings `rounds` times, one ping every `interval` seconds (random phase), so
    the server sees connections / interval pings per second; interval 0 = back to back."""
    sockets = await open_many(url, connections, headers)
    await asyncio.sleep(2)  # let the server finish the handshakes before measuring
    result = await echo_on(sockets, rounds, interval)
    await close_all(sockets)
    return result


async def echo_on(sockets: list[ClientConnection], rounds: int, interval: float) -> dict[str, float]:
    samples: list[float] = []

    async def drive(ws: ClientConnection) -> None:
        await asyncio.sleep(random.uniform(0, interval))
        for n in range(rounds):
            if n and interval:
                await asyncio.sleep(interval)
            frame = json.dumps({"header": {"type": "ping", "id": n}})
            started = time.perf_counter()
            await ws.send(frame)
            while True:
                reply = json.loads(await ws.recv())
                if reply["header"]["type"] == "pong":
                    break
            samples.append(time.perf_counter() - started)

    await asyncio.gather(*(drive(ws) for ws in sockets), return_exceptions=True)
    ordered = sorted(samples) or [float("nan")]
    return {
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
        "samples": len(ordered),
    }


# --- Idle connections ------------------------------------------------------------------------


async def warm_up(url: str, headers: dict[str, str]) -> None:
    """A few connections first, so one-time costs (imports, the kernel's start) are not counted per connection."""
    await close_all(await open_many(url, 40, headers))
    await asyncio.sleep(0.5)


async def idle(url: str, headers: dict[str, str], pid: int, count: int) -> dict[str, float]:
    await warm_up(url, headers)
    before = rss_kib(pid)
    sockets = await open_many(url, count, headers)
    await asyncio.sleep(1.0)
    after = rss_kib(pid)
    held = sum(1 for ws in sockets if ws.state.name == "OPEN")
    await close_all(sockets)
    return {"held": held, "rss_before_mib": before / 1024, "kib_per_connection": (after - before) / count}


async def many(url: str, headers: dict[str, str], pid: int, count: int) -> dict[str, float]:
    """`count` connections held at once: memory per connection, then echo at 1,000 pings/s across them."""
    await warm_up(url, headers)
    before = rss_kib(pid)
    started = time.perf_counter()
    sockets = await open_many(url, count, headers)
    opened = time.perf_counter() - started
    await asyncio.sleep(2.0)
    after = rss_kib(pid)
    result = await echo_on(sockets, 3, count / 1000)
    held = sum(1 for ws in sockets if ws.state.name == "OPEN")
    await close_all(sockets)
    return {
        "held": held,
        "open_s": opened,
        "kib_per_connection": (after - before) / count,
        **result,
    }


# --- Fan-out ------------------------------------------------------------------------------------


async def fan_out(
    url: str, headers: dict[str, str], pid: int, subscribers: int, messages: int, *, baseline: bool
) -> dict[str, float]:
    sockets = await open_many(url, subscribers, headers)
    if not baseline:
        for ws in sockets:
            await ws.send(json.dumps({"header": {"type": "subscribe", "channel": "bench.fan", "id": "s"}}))
        for ws in sockets:
            while json.loads(await ws.recv())["header"]["type"] != "ack":
                pass
    (publisher,) = await open_many(url, 1, headers)
    received = [0] * subscribers
    done = asyncio.Event()
    remaining = [subscribers]

    async def read(index: int, ws: ClientConnection) -> None:
        while received[index] < messages:
            raw = await ws.recv()
            if baseline or '"type":"message"' in raw[:40]:
                received[index] += 1
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    readers = [asyncio.ensure_future(read(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(0.5)
    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    for n in range(messages):
        if baseline:
            await publisher.send(json.dumps({"n": n, "pad": "x" * 40}))
        else:
            await publisher.send(
                json.dumps(
                    {"header": {"type": "publish", "channel": "bench.fan"}, "payload": {"n": n, "pad": "x" * 40}}
                )
            )
    try:
        await asyncio.wait_for(done.wait(), timeout=300)
    finally:
        wall = time.perf_counter() - wall0
        cpu = cpu_seconds(pid) - cpu0
        for reader in readers:
            reader.cancel()
    # The baseline's publisher is in the group too: it gets (and costs) one more delivery per message.
    deliveries = subscribers * messages + (messages if baseline else 0)
    await close_all([*sockets, publisher])
    return {
        "deliveries": deliveries,
        "per_second": deliveries / wall,
        "cpu_us_per_delivery": cpu / deliveries * 1e6,
        "wall_s": wall,
    }


def row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


async def main_async(args: argparse.Namespace) -> None:
    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    names = [name.strip() for name in args.server.split(",") if name.strip()]
    servers = Servers(redis_url)
    try:
        token = servers.prepare()
        headers = {"Authorization": f"Bearer {token}"}
        ours = {}
        for name in names:
            process, port = servers.ours(name)
            ours[name] = (process.pid, f"ws://127.0.0.1:{port}/ws/")
        base, base_port = servers.baseline()
        bare, bare_port = servers.bare()
        base_url, bare_url = f"ws://127.0.0.1:{base_port}/ws/", f"ws://127.0.0.1:{bare_port}/"
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n")

        parts = set(args.only.split(","))
        if "echo" in parts:
            print("## Echo round trip (ping -> pong), ours\n")
            print(row("server", "connections", "offered load", "samples", "p50", "p99"))
            print(row("---", "---", "---", "---:", "---:", "---:"))
            cases = [(1, 200, 0.0), (100, 10, 1.0), (1000, 5, 1.0), (100, 20, 0.0)]
            for connections, rounds, interval in cases:
                if args.quick and connections == 1000:
                    continue
                for name, (_, url) in ours.items():
                    result = await echo(url, headers, connections, rounds, interval)
                    load = f"{connections / interval:,.0f} pings/s" if interval else "back to back (saturated)"
                    print(
                        row(
                            name,
                            connections,
                            load,
                            result["samples"],
                            f"{result['p50_ms']:.2f} ms",
                            f"{result['p99_ms']:.2f} ms",
                        )
                    )

        if "idle" in parts:
            idle_count = 300 if args.quick else 2000
            print(f"\n## Idle connections ({idle_count} opened at once)\n")
            print(row("server", "held", "RSS before", "memory per connection"))
            print(row("---", "---:", "---:", "---:"))
            targets = [*((f"ours on {n}", url, pid) for n, (pid, url) in ours.items())]
            targets += [("baseline", base_url, base.pid), ("bare websockets", bare_url, bare.pid)]
            for name, url, pid in targets:
                result = await idle(url, headers, pid, idle_count)
                print(
                    row(
                        name,
                        result["held"],
                        f"{result['rss_before_mib']:.0f} MiB",
                        f"{result['kib_per_connection']:.1f} KiB",
                    )
                )

        if "fanout" in parts:
            print("\n## Fan-out (server CPU per delivery: the server's whole process tree)\n")
            print(
                row(
                    "subscribers",
                    "messages",
                    "server",
                    "deliveries/s",
                    "server CPU per delivery",
                    "vs bare",
                    "vs baseline",
                )
            )
            print(row("---", "---:", "---", "---:", "---:", "---:", "---:"))
            fan_cases = ((500, 40), (2000, 10)) if not args.quick else ((200, 20),)
            for subscribers, messages in fan_cases:
                base_result = await fan_out(base_url, headers, base.pid, subscribers, messages, baseline=True)
                bare_result = await fan_out(bare_url, headers, bare.pid, subscribers, messages, baseline=True)
                base_cpu, bare_cpu = base_result["cpu_us_per_delivery"], bare_result["cpu_us_per_delivery"]
                for label, result in (("baseline (group_send)", base_result), ("bare websockets", bare_result)):
                    cpu = result["cpu_us_per_delivery"]
                    print(
                        row(
                            subscribers,
                            messages,
                            label,
                            f"{result['per_second']:,.0f}",
                            f"{cpu:.1f} µs",
                            f"{cpu / bare_cpu:.1f}x",
                            f"{base_cpu / cpu:.1f}x less",
                        )
                    )
                for name, (pid, url) in ours.items():
                    result = await fan_out(url, headers, pid, subscribers, messages, baseline=False)
                    cpu = result["cpu_us_per_delivery"]
                    print(
                        row(
                            subscribers,
                            messages,
                            f"ours on {name}",
                            f"{result['per_second']:,.0f}",
                            f"{cpu:.1f} µs",
                            f"{cpu / bare_cpu:.1f}x",
                            f"{base_cpu / cpu:.1f}x less",
                        )
                    )

        if args.connections:
            count = args.connections
            print(f"\n## {count:,} connections held at once, echo at 1,000 pings/s across them\n")
            print(row("server", "held", "opening took", "memory per connection", "echo samples", "p50", "p99"))
            print(row("---", "---:", "---:", "---:", "---:", "---:", "---:"))
            for name, (pid, url) in ours.items():
                result = await many(url, headers, pid, count)
                print(
                    row(
                        f"ours on {name}",
                        result["held"],
                        f"{result['open_s']:.0f} s",
                        f"{result['kib_per_connection']:.1f} KiB",
                        result["samples"],
                        f"{result['p50_ms']:.2f} ms",
                        f"{result['p99_ms']:.2f} ms",
                    )
                )
        print(f"\nload at the end {os.getloadavg()[0]:.1f}")
    finally:
        servers.stop()


def raise_open_files(needed: int) -> None:
    """Client sockets here, server sockets in the children (which inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 1024 if hard == resource.RLIM_INFINITY else min(hard, needed + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < needed:
        sys.exit(f"--connections {needed} needs `ulimit -n` of at least {needed + 1024} (hard limit {hard})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script works")
    parser.add_argument(
        "--server",
        default="daphne,uvicorn,granian",
        help="comma-separated: manage.py serve --server for each "
        "(daphne-stock: the plain Daphne CLI; uvicorn:wsproto: that WebSocket implementation)",
    )
    parser.add_argument("--only", default="echo,idle,fanout", help="comma-separated parts to run")
    parser.add_argument("--connections", type=int, default=0, help="also hold this many at once (e.g. 10000)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` stops the servers
    raise_open_files(max(args.connections, 2000) + 2100)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
