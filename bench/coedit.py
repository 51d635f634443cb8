"""Co-editing benchmark: our /ws/docs server vs the stock Node `@y/websocket-server@0.1.1`, same load.

    .venv/bin/python bench/coedit.py [--editors 2 20 100] [--seconds 5] [--rate 100]

For each N, N editors (pycrdt documents on plain `websockets` connections)
type into one shared document, then into separate documents (pairs, so every
edit has someone to see it). The total typing rate is fixed (`--rate` edits/s
across all editors), so both servers get exactly the same work. Measured:
- edits/s delivered end to end (an edit counts once every other editor of its
  document has it) and deliveries/s;
- p50/p99 latency from one editor's send to the last other editor receiving it.
An edit is identified by (client id, first clock) read from the update's header.

Our server runs as in production minus the proxy: `manage.py serve` (Daphne),
SQLite by default; `--services` runs it on PostgreSQL + Redis as production does
(DATABASE_URL/REDIS_URL from the environment, else the local defaults below).
Every update is committed to the log before it is relayed. The Node
server keeps documents in memory only. Both are started and stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from pycrdt import Doc, Text, write_var_uint

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collab import protocol  # noqa: E402

NODE_MODULES = ROOT / "frontend" / "node_modules"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url_for: Any  # document index -> ws URL
    headers: dict[str, str] = field(default_factory=dict)


SETUP = """
import json
from io import StringIO
from django.contrib.auth import get_user_model
from django.core.management import call_command
from collab import services
user, _ = get_user_model().objects.get_or_create(username="bench")
out = StringIO()
call_command("createtoken", "bench", scopes="docs:read docs:write", expires=86400, stdout=out)
ids = [services.document_create(owner=user, title="bench %d" % i).pk for i in range({count})]
# One user on one IP with 100 editors is the point here: lift the default socket and edit limits.
from policies.models import ConnectionLimitPolicy, RateLimitPolicy
ConnectionLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)
RateLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)
print(json.dumps({{"token": out.getvalue().strip(), "ids": ids}}))
"""


SERVICES_DEFAULTS = {
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/webconnect_bench",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def start_ours(documents: int, workdir: Path, services: bool) -> Server:
    base = {key: value for key, value in os.environ.items() if key not in SERVICES_DEFAULTS}
    if services:
        base.update({key: os.environ.get(key) or default for key, default in SERVICES_DEFAULTS.items()})
    env = {
        **base,
        "DJANGO_SETTINGS_MODULE": "webconnect.settings",
        "SECRET_KEY": "bench-" + "x" * 50,
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "WEBCONNECT_DATA_DIR": str(workdir),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "text",
        "CELERY_TASK_ALWAYS_EAGER": "true",
    }
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    setup = subprocess.run(
        [python, "manage.py", "shell", "-c", SETUP.format(count=documents)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(setup.stdout.strip().splitlines()[-1])
    port = free_port()
    log = (workdir / "daphne.log").open("wb")
    process = subprocess.Popen(
        [python, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_port(port, process)
    ids = info["ids"]
    return Server(
        "ours",
        process,
        lambda i: f"ws://127.0.0.1:{port}/ws/docs/{ids[i]}",
        {"Authorization": f"Bearer {info['token']}"},
    )


def start_node(workdir: Path) -> Server:
    script = NODE_MODULES / "@y" / "websocket-server" / "src" / "server.js"
    if not script.exists():
        raise SystemExit("frontend/node_modules/@y/websocket-server is missing: run `make assets`")
    port = free_port()
    log = (workdir / "node.log").open("wb")
    # node directly (not npx) so stopping it stops the server itself.
    process = subprocess.Popen(
        ["node", str(script)],
        cwd=ROOT / "frontend",
        env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_port(port, process)
    run = random.randrange(1 << 30)
    return Server("node", process, lambda i: f"ws://127.0.0.1:{port}/bench-{run}-{i}")


# --- editors -----------------------------------------------------------------------------------


def state_keys(update: bytes) -> list[tuple[int, int]]:
    """(client, first clock) of each client's structs in a v1 update: identifies one edit."""
    reader = protocol._Reader(update)
    if reader.var_uint() == 0:
        return []
    reader.var_uint()  # number of structs
    return [(reader.var_uint(), reader.var_uint())]


class Editor:
    def __init__(self, url: str, headers: dict[str, str], document: int, sent: dict[Any, float]) -> None:
        self.url = url
        self.headers = headers
        self.document = document
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("t", type=Text)
        self.synced = asyncio.Event()
        self.sent = sent  # (client, clock) -> send time, shared
        # client -> (end clocks received, in order; when). A server relays each client's
        # edits in order, so edit (client, clock) arrived with the first end clock above it.
        self.received: dict[int, tuple[list[int], list[float]]] = {}
        # What this editor received, applied (its own typing stays in `doc`): the end clocks
        # come from its state vector, since a merged update's structs cannot be skipped cheaply.
        self.mirror: Doc[Any] = Doc()
        self.clocks: dict[int, int] = {}
        self.socket: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self.socket = await websockets.connect(self.url, additional_headers=self.headers, max_size=None)
        self.reader = asyncio.create_task(self._read())
        await self.socket.send(protocol.sync_step1(self.doc.get_state()))
        await asyncio.wait_for(self.synced.wait(), 30)

    async def _read(self) -> None:
        try:
            async for frame in self.socket:
                now = time.perf_counter()
                message = protocol.parse(frame)
                if isinstance(message, protocol.SyncUpdate):
                    self._note(message.update, now)
                elif isinstance(message, protocol.SyncStep1):
                    await self.socket.send(protocol.sync_step2(self.doc.get_update(message.state_vector)))
                elif isinstance(message, protocol.SyncStep2):
                    self.mirror.apply_update(message.update)
                    self.clocks = protocol._state_vector(self.mirror.get_state())
                    self.synced.set()
        except websockets.ConnectionClosed:
            pass

    def _note(self, update: bytes, now: float) -> None:
        self.mirror.apply_update(update)
        sv = self.mirror.get_state()
        keys = state_keys(update)
        if update[:1] == b"\x01":
            # One client's structs (the usual frame): find its clock in the state vector without
            # decoding all of it (at 100 editors that decoding made the load generator the bottleneck).
            client = keys[0][0]
            at = sv.find(write_var_uint(client))
            reader = protocol._Reader(sv)
            reader.pos = at + len(write_var_uint(client))
            state = {client: reader.var_uint()} if at >= 0 else {}
        else:  # several clients' structs (a merged update): decode it all
            state = protocol._state_vector(sv)
        for client in state:
            end = state[client]
            if end > self.clocks.get(client, 0):
                self.clocks[client] = end
                ends, times = self.received.setdefault(client, ([], []))
                ends.append(end)
                times.append(now)

    def got(self, key: tuple[int, int]) -> float | None:
        """When edit `key` arrived here (None: not yet)."""
        entry = self.received.get(key[0])
        if entry is None:
            return None
        ends, times = entry
        i = bisect.bisect_right(ends, key[1])
        return times[i] if i < len(ends) else None

    async def type_one(self) -> tuple[int, int]:
        before = self.doc.get_state()
        self.text.insert(len(self.text), "x")
        update = self.doc.get_update(before)
        key = state_keys(update)[0]
        self.sent[key] = time.perf_counter()
        await self.socket.send(protocol.sync_update(update))
        return key

    async def close(self) -> None:
        await self.socket.close()
        if self.reader is not None:
            await self.reader


async def run_scenario(server: Server, editors: int, shared: bool, seconds: float, rate: float) -> dict[str, Any]:
    sent: dict[Any, float] = {}
    documents = [0 if shared else i // 2 for i in range(editors)]
    clients = [Editor(server.url_for(d), server.headers, d, sent) for d in documents]
    for batch in range(0, editors, 20):
        await asyncio.gather(*(c.connect() for c in clients[batch : batch + 20]))
    edits: list[tuple[Editor, tuple[int, int]]] = []
    per_editor = rate / editors
    start = time.perf_counter()

    async def typist(editor: Editor) -> None:
        await asyncio.sleep(random.random() / per_editor)
        next_at = time.perf_counter()
        while time.perf_counter() - start < seconds:
            edits.append((editor, await editor.type_one()))
            next_at += 1 / per_editor
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    await asyncio.gather(*(typist(c) for c in clients))
    typing_done = time.perf_counter()
    # Let deliveries drain (bounded).
    peers = {c: [o for o in clients if o is not c and o.document == c.document] for c in clients}
    deadline = time.perf_counter() + 15
    while time.perf_counter() < deadline:
        if all(o.got(key) is not None for editor, key in edits for o in peers[editor]):
            break
        await asyncio.sleep(0.05)
    latencies = []
    missing = 0
    last = typing_done
    for editor, key in edits:
        times = [o.got(key) for o in peers[editor]]
        if any(t is None for t in times):
            missing += 1
            continue
        done = max(t for t in times if t is not None)
        last = max(last, done)
        latencies.append((done - sent[key]) * 1000)
    await asyncio.gather(*(c.close() for c in clients))
    deliveries = sum(len(peers[e]) for e, _ in edits) - missing
    elapsed = last - start
    latencies.sort()
    return {
        "server": server.name,
        "editors": editors,
        "layout": "one document" if shared else f"{editors // 2} documents",
        "edits": len(edits),
        "lost": missing,
        "edits_per_s": round((len(edits) - missing) / elapsed, 1),
        "deliveries_per_s": round(deliveries / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2) if latencies else None,
    }


async def run_burst(server: Server, count: int) -> dict[str, Any]:
    """One editor sends `count` single-character updates back to back; time until the other has them all."""
    sent: dict[Any, float] = {}
    writer, reader = (
        Editor(server.url_for(0), server.headers, 0, sent),
        Editor(server.url_for(0), server.headers, 0, sent),
    )
    await writer.connect()
    await reader.connect()
    start = time.perf_counter()
    keys = [await writer.type_one() for _ in range(count)]
    deadline = start + 60
    # Polling is part of the measurement (5 ms resolution), not a wait for an event.
    while time.perf_counter() < deadline and not all(reader.got(k) is not None for k in keys):  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    done = max(reader.got(k) or float("inf") for k in keys)
    await writer.close()
    await reader.close()
    return {"server": server.name, "burst": count, "ms": round((done - start) * 1000, 1)}


async def main_async(
    args: argparse.Namespace, ours: Server, node: Server
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    bursts = []
    for server in (node, ours):
        bursts.append(await run_burst(server, args.burst))
        print(json.dumps(bursts[-1]), flush=True)
    results = []
    for editors in args.editors:
        for shared in (True, False):
            for server in (node, ours):
                result = await run_scenario(server, editors, shared, args.seconds, args.rate)
                print(json.dumps(result), flush=True)
                results.append(result)
    return bursts, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--editors", type=int, nargs="+", default=[2, 20, 100])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=100.0, help="edits per second across all editors")
    parser.add_argument("--burst", type=int, default=1000, help="updates sent back to back between two editors")
    parser.add_argument(
        "--services", action="store_true", help="our server on PostgreSQL + Redis (DATABASE_URL, REDIS_URL)"
    )
    args = parser.parse_args()
    if shutil.which("node") is None:
        raise SystemExit("node is required for the baseline")
    workdir = Path(tempfile.mkdtemp(prefix="coedit-bench-"))
    servers: list[Server] = []
    try:
        ours = start_ours(max(args.editors) // 2 + 1, workdir, args.services)
        servers.append(ours)
        node = start_node(workdir)
        servers.append(node)
        bursts, results = asyncio.run(main_async(args, ours, node))
    finally:
        for server in servers:
            stop(server.process)
        shutil.rmtree(workdir, ignore_errors=True)
    burst_node, burst_ours = bursts
    print(f"\nours on {'PostgreSQL + Redis' if args.services else 'SQLite'}; load average {os.getloadavg()}")
    print(
        f"\nburst of {args.burst} updates, one writer to one reader: Node {burst_node['ms']} ms, "
        f"ours {burst_ours['ms']} ms, ratio {burst_ours['ms'] / burst_node['ms']:.2f}"
    )
    print("\n| editors | layout | edits/s Node / ours | p50 ms Node / ours (ratio) | p99 ms Node / ours (ratio) |")
    print("| --- | --- | --- | --- | --- |")
    for i in range(0, len(results), 2):
        node_r, ours_r = results[i], results[i + 1]

        def ratio(key: str, node_r: dict[str, Any] = node_r, ours_r: dict[str, Any] = ours_r) -> str:
            return f"{ours_r[key] / node_r[key]:.1f}x" if node_r[key] and ours_r[key] else "n/a"

        print(
            f"| {ours_r['editors']} | {ours_r['layout']} | {node_r['edits_per_s']} / {ours_r['edits_per_s']} "
            f"| {node_r['p50_ms']} / {ours_r['p50_ms']} ({ratio('p50_ms')}) "
            f"| {node_r['p99_ms']} / {ours_r['p99_ms']} ({ratio('p99_ms')}) |"
        )


if __name__ == "__main__":
    main()
