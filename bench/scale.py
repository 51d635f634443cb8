"""Scale-out benchmark: K server processes, many sockets over many channels, pattern vs per-channel subscription.

Run on demand (not in CI); it starts everything it uses and stops it by pid at the end:

    .venv/bin/python bench/scale.py [--quick] [--ks 1,2,4] [--modes pattern,single,cluster]

Modes:
- `pattern`: the commit before per-channel subscriptions (645d7ca, checked out with
  `git worktree add` into a temporary directory), one Redis: every process PSUBSCRIBEs to all.
- `single`: this tree, one Redis, per-channel SUBSCRIBE.
- `cluster`: this tree on a 3-master Redis Cluster started here (sharded pub/sub).

For each K (server processes, no proxy, clients spread over their ports) the channels are split
into K disjoint sets: the sockets of process i subscribe only channels of set i (10 sockets per
channel: 10,000 sockets over 1,000 channels, --quick: 1,000 over 100), and one publisher socket
per process publishes round-robin on its own set at a steady total rate. Printed per run:
deliveries/s, p99 latency (publish to receipt, from a timestamp in the payload), server CPU per
delivery (utime+stime of the servers), and each process's inbound bytes from Redis during the
steady phase (`ss -tin` bytes_received on its connections to the Redis ports), as a ratio to its
own share (its channels' messages times the bytes per message one process received at K=1).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK = os.sysconf("SC_CLK_TCK")
PATTERN_COMMIT = "645d7ca"


def free_port() -> int:
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port <= 55535:  # a cluster node's bus port is port + 10000
            return port
    raise RuntimeError("no free port")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def wait_port(port: int, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process on {port} exited early")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def inbound_bytes(pids: list[int], redis_ports: set[int]) -> dict[int, int]:
    """Bytes each process received on its TCP connections to the Redis ports (ss -tinp)."""
    out = subprocess.run(["ss", "-tinp"], capture_output=True, text=True, check=True).stdout
    totals = dict.fromkeys(pids, 0)
    lines = out.splitlines()
    for head, info in itertools.pairwise(lines):
        parts = head.split()
        if len(parts) < 5 or parts[0] != "ESTAB":
            continue
        peer = parts[4].rsplit(":", 1)[-1]
        owner = re.search(r"pid=(\d+)", head)
        got = re.search(r"bytes_received:(\d+)", info)
        if owner and got and peer.isdigit() and int(peer) in redis_ports and int(owner.group(1)) in totals:
            totals[int(owner.group(1))] += int(got.group(1))
    return totals


class Stack:
    """Redis (one, or a 3-master cluster), the prepared database, and server processes; all stopped at the end."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="webconnect-bench-scale-"))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.old_tree: Path | None = None

    def redis(self, *extra: str) -> int:
        port = free_port()
        root = self.tmp / f"redis-{port}"
        root.mkdir()
        process = subprocess.Popen(
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
                *("--dir", str(root), "--daemonize", "no", *extra),
            ],
            stdout=(root / "log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        wait_port(port, process)
        return port

    def cluster(self, masters: int = 3) -> list[int]:
        ports = [
            self.redis(
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.tmp / f"nodes-{n}.conf"),
                "--cluster-require-full-coverage",
                "no",
            )
            for n in range(masters)
        ]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports], "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [
                subprocess.run(["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True).stdout
                for p in ports
            ]
            if all("cluster_state:ok" in s for s in states):
                return ports
            time.sleep(0.2)
        raise RuntimeError("the cluster did not form")

    def pattern_tree(self) -> Path:
        if self.old_tree is None:
            self.old_tree = self.tmp / "pattern-tree"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(self.old_tree), PATTERN_COMMIT],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        return self.old_tree

    def env(self, name: str, redis_url: str, cluster_url: str = "") -> dict[str, str]:
        data = self.tmp / f"data-{name}"
        data.mkdir(exist_ok=True)
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webconnect.settings",
            "DEBUG": "false",
            "SECRET_KEY": "bench-" + secrets.token_urlsafe(40),
            "WEBCONNECT_DATA_DIR": str(data),
            "REDIS_URL": redis_url,
            "REALTIME_REDIS_CLUSTER_URL": cluster_url,
            "REALTIME_REDIS_PREFIX": f"bench-{name}-{secrets.token_hex(3)}:rt",
            "RATE_LIMIT_STORAGE_URI": "memory://",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "REALTIME_QUEUE_SIZE": "10000",
        }

    def prepare(self, tree: Path, env: dict[str, str]) -> str:
        def manage(*args: str) -> str:
            env_clean = {k: v for k, v in env.items() if k != "DATABASE_URL"}
            done = subprocess.run(
                [PY, "manage.py", *args], cwd=tree, env=env_clean, capture_output=True, text=True, check=True
            )
            return done.stdout.strip()

        manage("migrate", "--noinput", "-v", "0")
        manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model;"
            "from webconnect.models import Namespace;"
            "get_user_model().objects.create_superuser('bench', 'bench@example.com', 'x');"
            "Namespace.objects.create(name='bench', history_size=10, presence=False, join_leave=False);"
            "from policies.models import ConnectionLimitPolicy, RateLimitPolicy;"
            "ConnectionLimitPolicy.objects.filter(name__startswith='default-').update(enabled=False);"
            "RateLimitPolicy.objects.filter(name__startswith='default-').update(enabled=False)",
        )
        return manage("createtoken", "bench", "--scopes", "realtime:read realtime:write")

    def servers(self, tree: Path, env: dict[str, str], k: int) -> list[tuple[subprocess.Popen[bytes], int]]:
        started = []
        env = {k2: v for k2, v in env.items() if k2 != "DATABASE_URL"}
        for _ in range(k):
            port = free_port()
            log = (self.tmp / f"server-{port}.log").open("wb")
            process = subprocess.Popen(
                [PY, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=tree,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.processes.append(process)
            started.append((process, port))
        for process, port in started:
            wait_port(port, process)
        return started

    def stop(self, processes: list[subprocess.Popen[bytes]] | None = None) -> None:
        for process in processes if processes is not None else list(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in processes if processes is not None else list(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            if process in self.processes:
                self.processes.remove(process)

    def close(self) -> None:
        self.stop()
        if self.old_tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(self.old_tree)], cwd=ROOT, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


async def run_case(
    ports: list[int], token: str, connections: int, channels: int, rate: float, seconds: float, sample: Any
) -> dict[str, Any]:
    k = len(ports)
    latencies: list[float] = []
    received = 0
    measuring = False
    sockets = []
    headers = {"Authorization": f"Bearer {token}"}

    async def reader(ws: Any) -> None:
        nonlocal received
        async for text in ws:
            frame = json.loads(text)
            if frame["header"]["type"] == "message" and measuring:
                received += 1
                latencies.append(time.time() - frame["payload"]["t"])

    # Channel c belongs to process c % k: its sockets connect there, and so does its publisher.
    per_channel = max(1, connections // channels)
    readers = []
    for c in range(channels):
        for _ in range(per_channel):
            ws = await connect(
                f"ws://127.0.0.1:{ports[c % k]}/ws/", additional_headers=headers, open_timeout=60, max_queue=None
            )
            await ws.send(json.dumps({"header": {"type": "subscribe", "channel": f"bench.c{c}", "id": "s"}}))
            ack = json.loads(await ws.recv())
            assert ack["header"]["type"] == "ack", ack
            sockets.append(ws)
            readers.append(asyncio.create_task(reader(ws)))
    publishers = [
        await connect(f"ws://127.0.0.1:{port}/ws/", additional_headers=headers, open_timeout=60) for port in ports
    ]
    drains = [asyncio.create_task(_drain(ws)) for ws in publishers]
    published = [0] * k

    async def publish(i: int) -> None:
        own = [c for c in range(channels) if c % k == i]
        interval = k / rate
        n = 0
        next_at = time.monotonic()
        while True:
            channel = own[n % len(own)]
            frame = {"header": {"type": "publish", "channel": f"bench.c{channel}"}, "payload": {"t": time.time()}}
            await publishers[i].send(json.dumps(frame))
            published[i] += 1
            n += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    pub_tasks = [asyncio.create_task(publish(i)) for i in range(k)]
    await asyncio.sleep(2.0)  # warm up
    measuring = True
    before = sample()
    started = time.monotonic()
    published_before = list(published)
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    after = sample()
    measuring = False
    for task in pub_tasks:
        task.cancel()
    sent = [published[i] - published_before[i] for i in range(k)]
    for ws in sockets + publishers:
        with suppress(Exception):
            await ws.close()
    for task in readers + drains:
        task.cancel()
    latencies.sort()
    return {
        "deliveries_per_s": received / elapsed,
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "cpu": after["cpu"] - before["cpu"],
        "inbound": {pid: after["inbound"][pid] - before["inbound"][pid] for pid in after["inbound"]},
        "received": received,
        "published": sent,
    }


async def _drain(ws: Any) -> None:
    with suppress(Exception):
        async for _ in ws:
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 sockets over 100 channels, 10 s per run")
    parser.add_argument("--ks", default="1,2,4")
    parser.add_argument("--modes", default="pattern,single,cluster")
    parser.add_argument("--rate", type=float, default=0.0, help="messages/s in total (default 50, --quick 20)")
    parser.add_argument("--seconds", type=float, default=0.0)
    args = parser.parse_args()
    connections, channels = (1000, 100) if args.quick else (10000, 1000)
    rate = args.rate or (20.0 if args.quick else 50.0)
    seconds = args.seconds or (10.0 if args.quick else 20.0)
    ks = [int(k) for k in args.ks.split(",")]
    modes = args.modes.split(",")
    print(f"{connections} sockets over {channels} channels, {rate:g} msg/s, {seconds:g} s per run")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    stack = Stack()
    results: list[tuple[str, int, dict[str, Any], list[int]]] = []
    try:
        single_port = stack.redis()
        cluster_ports = stack.cluster() if "cluster" in modes else []
        for mode in modes:
            if mode == "pattern":
                tree, redis_ports = stack.pattern_tree(), {single_port}
                env = stack.env(mode, f"redis://127.0.0.1:{single_port}/0")
            elif mode == "single":
                tree, redis_ports = ROOT, {single_port}
                env = stack.env(mode, f"redis://127.0.0.1:{single_port}/0")
            else:
                tree, redis_ports = ROOT, set(cluster_ports)
                env = stack.env(mode, f"redis://127.0.0.1:{single_port}/0", f"redis://127.0.0.1:{cluster_ports[0]}")
            token = stack.prepare(tree, env)
            for k in ks:
                servers = stack.servers(tree, env, k)
                pids = [p.pid for p, _ in servers]

                def sample(pids: list[int] = pids, redis_ports: set[int] = redis_ports) -> dict[str, Any]:
                    return {
                        "cpu": sum(cpu_seconds(pid) for pid in pids),
                        "inbound": inbound_bytes(pids, redis_ports),
                    }

                result = asyncio.run(
                    run_case([port for _, port in servers], token, connections, channels, rate, seconds, sample)
                )
                results.append((mode, k, result, pids))
                stack.stop([p for p, _ in servers])
                print(f"  {mode} K={k}: {result['deliveries_per_s']:.0f} deliveries/s, done", flush=True)
    finally:
        stack.close()
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    # Bytes per message one process receives from Redis, per mode, from its K=1 run.
    per_message: dict[str, float] = {}
    for mode, k, result, _ in results:
        if k == 1 and sum(result["published"]):
            per_message[mode] = sum(result["inbound"].values()) / sum(result["published"])
    print(
        "| mode | K | deliveries/s | p50 | p99 | server CPU per delivery | inbound per process (KiB) | vs own share |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for mode, k, result, pids in results:
        cpu_per = 1e6 * result["cpu"] / max(1, result["received"])
        inbound = [result["inbound"][pid] for pid in pids]
        unit = per_message.get(mode)
        shares = (
            [inbound[i] / (unit * result["published"][i]) for i in range(k) if result["published"][i]] if unit else []
        )
        print(
            f"| {mode} | {k} | {result['deliveries_per_s']:.0f} | {result['p50_ms']:.1f} ms | "
            f"{result['p99_ms']:.1f} ms | {cpu_per:.0f} µs | {', '.join(f'{b / 1024:.0f}' for b in inbound)} | "
            f"{', '.join(f'{s:.2f}x' for s in shares) or '-'} |"
        )


if __name__ == "__main__":
    main()
