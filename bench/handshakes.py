"""Handshake benchmark: a reconnect storm of authenticated WebSocket clients against one server process.

Run on demand (not in CI):

    .venv/bin/python bench/handshakes.py [--quick]                       # SQLite, no Redis
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/webconnect_h5 REDIS_URL=redis://127.0.0.1:6379/5 \
        .venv/bin/python bench/handshakes.py                              # services mode

It starts one server (`manage.py serve`, Daphne, DEBUG off) with a fresh SQLite database in a
temporary directory, or on DATABASE_URL/REDIS_URL when both are set (services mode: sessions and
tokens in PostgreSQL, connection places in Redis). It creates `--users` users, each with a bearer
token and a signed-in session, keeps the per-user connection limit on (so admission is measured)
and lifts the per-IP one (every client here comes from 127.0.0.1). Then, for each credential kind,
it opens `--clients` WebSockets to /ws/ as fast as `--concurrency` in-flight handshakes allow and
holds them all, like a fleet reconnecting after a deploy. A client is a raw HTTP upgrade on an
asyncio stream (no WebSocket library), so the client side costs little next to the server's.

Printed per kind: handshakes per second (wall clock, first SYN to last 101), p50/p99 handshake time
(connect to `101 Switching Protocols`), server CPU per handshake (utime+stime of the server
process over the storm; its reciprocal is what one process could sustain on a free core), and how
many sockets were still open a second after the last one connected (a socket refused by the
connection limits is closed right after its 101).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
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

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
CLK = os.sysconf("SC_CLK_TCK")

SETUP = """
import json, secrets
from datetime import timedelta
from importlib import import_module
from django.conf import settings
from django.contrib.auth import get_user_model, BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_application_model, set_token_value
from policies.models import ConnectionLimitPolicy, RateLimitPolicy
run, users, per_user = {run!r}, {users}, {per_user}
# Every client comes from 127.0.0.1: lift the per-IP limit, keep the per-user one, at room for the storm.
ConnectionLimitPolicy.objects.filter(name="default-sockets-per-ip").update(enabled=False)
ConnectionLimitPolicy.objects.filter(name="default-sockets-per-user").update(max_connections=max(100, per_user + 10))
RateLimitPolicy.objects.filter(name__startswith="default-").update(enabled=False)
User = get_user_model()
app, _ = get_application_model().objects.get_or_create(
    name="bench", defaults=dict(client_type="confidential", authorization_grant_type="client-credentials")
)
Token = get_access_token_model()
Store = import_module(settings.SESSION_ENGINE).SessionStore
out = {{"tokens": [], "sessions": [], "cookie": settings.SESSION_COOKIE_NAME}}
made = User.objects.bulk_create([User(username=f"hs-{{run}}-{{i}}", password="!") for i in range(users)])
made = list(User.objects.filter(username__startswith=f"hs-{{run}}-"))
tokens = []
for user in made:
    raw = secrets.token_urlsafe(32)
    token = Token(user=user, application=app, expires=timezone.now() + timedelta(hours=2),
                  scope="realtime:read realtime:write")
    set_token_value(token, raw)
    tokens.append(token)
    out["tokens"].append(raw)
    session = Store()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    out["sessions"].append(session.session_key)
Token.objects.bulk_create(tokens)
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def wait_port(port: int, process: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited early")
        with suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


class Server:
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="webconnect-bench-hs-")
        self.run = secrets.token_hex(4)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "webconnect.settings",
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "WEBCONNECT_DATA_DIR": self.tmp,
            "REALTIME_REDIS_PREFIX": f"bench-hs-{self.run}:rt",
            "RATE_LIMIT_KEY_PREFIX": f"bench-hs-{self.run}:rl",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            # Nothing idles out while the rest of the storm connects.
            "REALTIME_IDLE_TIMEOUT": "3600",
        }
        self.services = bool(os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"))
        if not self.services:
            for name in ("DATABASE_URL", "REDIS_URL"):
                self.env.pop(name, None)
            self.env["RATE_LIMIT_STORAGE_URI"] = "memory://"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def manage(self, *args: str) -> str:
        out = subprocess.run(
            [PY, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def prepare(self, users: int, per_user: int) -> dict[str, list[str]]:
        self.manage("migrate", "--noinput", "-v", "0")
        out = self.manage("shell", "-c", SETUP.format(run=self.run, users=users, per_user=per_user))
        data: dict[str, list[str]] = json.loads(out.splitlines()[-1])
        return data

    def start(self) -> int:
        self.port = free_port()
        log = (Path(self.tmp) / "server.log").open("wb")
        self.process = subprocess.Popen(
            [PY, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, self.process)
        return self.process.pid

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class Client:
    """One raw WebSocket upgrade; holds the socket open once answered 101."""

    def __init__(self, port: int, headers: list[str]) -> None:
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        lines = [
            "GET /ws/ HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *headers,
        ]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> float:
        started = time.perf_counter()
        for attempt in range(5):  # a full listen backlog resets a SYN now and then: retry it
            try:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                break
            except OSError:
                await asyncio.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError("could not connect")
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.request)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 60)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError("handshake refused: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
        return time.perf_counter() - started

    async def still_open(self) -> bool:
        """False if the server closed the socket (a close frame, or EOF) after its 101."""
        assert self.reader is not None
        try:
            first = await asyncio.wait_for(self.reader.read(1), 0.005)
        except TimeoutError:
            return True
        except OSError:  # reset by the server
            return False
        return bool(first) and first[0] & 0x0F != 0x8

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


async def storm(port: int, pid: int, headers: list[list[str]], clients: int, concurrency: int) -> dict[str, float]:
    pool = [Client(port, headers[n % len(headers)]) for n in range(clients)]
    times: list[float] = []
    failed = 0
    gate = asyncio.Semaphore(concurrency)

    async def one(client: Client) -> None:
        nonlocal failed
        async with gate:
            try:
                times.append(await client.open())
            except Exception:
                failed += 1

    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(one(c) for c in pool))
    wall, cpu = time.perf_counter() - wall0, cpu_seconds(pid) - cpu0
    await asyncio.sleep(1.0)
    opened = [c for c in pool if c.reader is not None]
    held = sum(await asyncio.gather(*(c.still_open() for c in opened)))
    for client in pool:
        client.abort()
    ordered = sorted(times)
    return {
        "ok": len(ordered),
        "failed": failed,
        "held": held,
        "per_second": len(ordered) / wall,
        "p50_ms": statistics.median(ordered) * 1000 if ordered else 0.0,
        "p99_ms": ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000 if ordered else 0.0,
        "cpu_us": cpu / max(1, len(ordered)) * 1e6,
    }


class Profiler:
    """py-spy attached to the server for the measured part (`--profile out.svg`), stopped with SIGINT."""

    def __init__(self, pid: int, output: str | None) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if output:
            spy = str(Path(PY).with_name("py-spy"))
            self.process = subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "-o", output]
                + (["--format", "raw"] if output.endswith(".txt") else []),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # attached before the load starts

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


async def main_async(args: argparse.Namespace) -> None:
    server = Server()
    per_user = -(-args.clients // args.users)
    try:
        data = server.prepare(args.users, per_user)
        pid = server.start()
        origin = f"Origin: http://127.0.0.1:{server.port}"
        kinds = {
            "bearer": [[f"Authorization: Bearer {t}"] for t in data["tokens"]],
            "session": [[origin, f"Cookie: {data['cookie']}={s}"] for s in data["sessions"]],  # type: ignore[str-format]
        }
        mode = "services (PostgreSQL + Redis)" if server.services else "embedded (SQLite, no Redis)"
        print(
            f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, {mode}, "
            f"{args.clients} clients per kind over {args.users} users, {args.concurrency} in flight\n"
        )
        # Warm the process up (first connection starts its background tasks).
        await storm(server.port, pid, kinds["bearer"][:1], 20, 5)
        profiler = Profiler(pid, args.profile)
        print(row("credential", "opened", "failed", "held after 1 s", "handshakes/s", "p50", "p99", "server CPU each"))
        print(row("---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"))
        for kind in args.kinds:
            result = await storm(server.port, pid, kinds[kind], args.clients, args.concurrency)
            print(
                row(
                    kind,
                    result["ok"],
                    result["failed"],
                    result["held"],
                    f"{result['per_second']:,.0f}",
                    f"{result['p50_ms']:.1f} ms",
                    f"{result['p99_ms']:.1f} ms",
                    f"{result['cpu_us']:,.0f} µs",
                ),
                flush=True,
            )
            await asyncio.sleep(3)  # let the server forget the aborted sockets before the next storm
        profiler.stop()
        print(f"\nload after: {os.getloadavg()[0]:.1f}")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 clients per kind, to check the script works")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument(
        "--users", type=int, help="users, each with one token and one session (default: one per client, all cold)"
    )
    parser.add_argument("--concurrency", type=int, default=48, help="handshakes in flight (Daphne's backlog is 50)")
    parser.add_argument(
        "--profile", metavar="SVG", help="record the server with py-spy into this flame graph (.txt: collapsed stacks)"
    )
    parser.add_argument("--kinds", nargs="+", default=["bearer", "session"], choices=["bearer", "session"])
    args = parser.parse_args()
    if args.quick:
        args.clients = min(args.clients, 1000)
    args.users = args.users or args.clients
    # `timeout` (SIGTERM) still stops the servers this started (the finally blocks run).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
