"""Fault-injection tools: a PostgreSQL cluster and a Redis server of the test's own, and clients that reconnect.

Every process here is started by the test and stopped by it, by pid: the
machine's own PostgreSQL (5432) and Redis (6379) are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from pycrdt import Doc, Text
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from collab import protocol
from tests.collab.yclient import RawClient
from tests.conftest import ARTIFACTS, ROOT, free_port
from webconnect.kernel import codes


async def wait_for(condition: Callable[[], bool], seconds: float, what: Callable[[], str] | str) -> float:
    """Poll until `condition()`; the time it took. Fails with `what` (a message, or a function making one)."""
    started = time.monotonic()
    deadline = started + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"after {seconds:.0f} s: {what() if callable(what) else what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- A PostgreSQL cluster of the test's own ------------------------------------------------------


def postgres_bin() -> Path | None:
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")]
    found.sort(key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    return found[-1] if found else None


@dataclass
class PrivatePostgres:
    """initdb into a temporary directory; `pg_ctl start/stop` on a port of its own."""

    root: Path
    port: int
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _as_owner(self, command: list[str]) -> list[str]:
        # PostgreSQL refuses to run as root: the cluster belongs to the postgres account then.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return command

    def _run(self, *command: str, timeout: float = 60) -> str:
        result = subprocess.run(
            self._as_owner([str(self.bin / command[0]), *command[1:]]),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
        return result.stdout

    @classmethod
    def create(cls) -> PrivatePostgres:
        bin_dir = postgres_bin()
        if bin_dir is None:
            pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        root = Path(tempfile.mkdtemp(prefix="wc-faults-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(root, ignore_errors=True)
                pytest.skip("running as root and there is no postgres account to own a cluster")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        cluster = cls(root, free_port(), bin_dir)
        try:
            cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data / "postmaster.pid").read_text().split()[0])
        return None

    def createdb(self, name: str) -> None:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def destroy(self) -> None:
        pid = self.postmaster_pid()
        if pid is not None and _pid_alive(pid):
            with contextlib.suppress(Exception):
                self.stop("immediate")
            if _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        ARTIFACTS.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copy(self.log, ARTIFACTS / f"postgres-{self.port}.log")
        shutil.rmtree(self.root, ignore_errors=True)


def manage(*args: str, env: dict[str, str], timeout: float = 180) -> str:
    """`manage.py …` as a real process; its standard output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"manage.py {args[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def django_env(database_url: str, database_name: str, **extra: str) -> dict[str, str]:
    """The environment of a process (manage.py, a server) on a given database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "WEBCONNECT_TEST_DATABASE_NAME": database_name,
        **extra,
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


SEED_DOCUMENT = """
import json
from io import StringIO
from django.contrib.auth import get_user_model
from django.core.management import call_command
from collab import services
user = get_user_model().objects.create_user(username="ann", password="correct horse battery staple")
document = services.document_create(owner=user, title="Outage")
tokens = []
for _ in range(3):
    out = StringIO()
    call_command("createtoken", "ann", scopes="docs:read docs:write", stdout=out)
    tokens.append(out.getvalue().strip())
print(json.dumps({"document": document.pk, "tokens": tokens}))
"""


def seed_document(env: dict[str, str]) -> tuple[int, list[str]]:
    """A user, one document she owns and three bearer tokens, created by `manage.py shell` on that database."""
    out = manage("shell", "-c", SEED_DOCUMENT, env=env)
    seeded = json.loads(out.strip().splitlines()[-1])
    return int(seeded["document"]), [str(token) for token in seeded["tokens"]]


# --- A Redis server of the test's own ------------------------------------------------------------


@dataclass
class PrivateRedis:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wc-faults-redis-")))
    extra: list[str] = field(default_factory=list)  # more redis-server options (a cluster node's)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        import redis

        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / f"redis-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.root),
                    "--daemonize",
                    "no",
                    *self.extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server on {self.port} exited with {self.process.returncode}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no clean-up, no persistence (it was started with none)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (so it is at most 55535)."""
    import socket

    for _ in range(200):
        port = free_port()
        if port > 55535:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = 20000 + probe.getsockname()[1] % 30000
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class PrivateRedisCluster:
    """A Redis Cluster of the test's own: `masters` masters, one replica each, on free ports.

    Each node runs from its own temp dir (its nodes.conf), started and stopped by pid.
    """

    masters: int = 3
    node_timeout_ms: int = 1500
    nodes: list[PrivateRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 30) -> None:
        import redis

        for _ in range(self.masters * 2):
            node = PrivateRedis(port=_cluster_port())
            self.nodes.append(node)
            node.extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(node.root / "nodes.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                # Redis 7 waits 5 s before a diskless full sync; a master killed in that window leaves a
                # replica that never synced, which refuses to fail over.
                "--repl-diskless-sync-delay",
                "0",
                # As production must run it (.env.example): a dead master's slots must not stop the others'.
                "--cluster-require-full-coverage",
                "no",
            ]
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while True:
            ok = 0
            for node in self.nodes:
                client = redis.Redis(port=node.port, socket_timeout=1)
                try:
                    info = client.execute_command("CLUSTER", "INFO")
                    formed = b"cluster_state:ok" in (info if isinstance(info, bytes) else str(info).encode())
                    # Formed means failover-ready too: every replica has completed its sync with its master.
                    replication = client.info("replication")
                    synced = replication.get("role") == "master" or replication.get("master_link_status") == "up"
                    if formed and synced:
                        ok += 1
                except redis.RedisError:
                    pass
                finally:
                    client.close()
            if ok == len(self.nodes):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the test's Redis Cluster did not form")
            time.sleep(0.2)

    def client(self) -> Any:
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, socket_timeout=2)

    def master_of(self, key: str) -> PrivateRedis:
        """The node serving `key`'s slot now."""
        import redis
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.nodes if n.port == port)
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise RuntimeError(f"no live node knows slot {slot}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# --- A y-websocket client that reconnects, like the browser's provider -----------------------------


@dataclass(frozen=True)
class Closed:
    code: int | None  # off the wire; None: no close frame (the connection dropped)
    at: float  # time.monotonic()
    url: str


@dataclass(frozen=True)
class HandshakeFailed:
    detail: str
    status: int | None
    at: float
    url: str


class Editor:
    """A pycrdt document edited by one user over y-websocket, reconnecting after a retryable close.

    On every (re)connect it sends sync step 1 with its state and answers the
    server's step 1 with step 2 of everything the server lacks, so edits made
    while disconnected reach the server. A close with GOING_AWAY moves it to
    the next URL (another process); any code a client must not retry stops it.
    """

    def __init__(self, name: str, urls: list[str], token: str, *, retry_delay: float = 0.2) -> None:
        self.name = name
        self.urls = list(urls)
        self.url_index = 0
        self.token = token
        self.retry_delay = retry_delay
        self.doc: Doc[Any] = Doc()
        self.made: list[str] = []
        self.closes: list[Closed] = []
        self.handshake_failures: list[HandshakeFailed] = []
        self.syncs: list[float] = []  # when the server's sync step 2 arrived (= our offline edits are stored)
        self.ws: Any = None
        self.synced = False
        self.fatal: str | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def text(self) -> Text:
        text: Text = self.doc.get("t", type=Text)
        return text

    @property
    def url(self) -> str:
        return self.urls[self.url_index % len(self.urls)]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"editor-{self.name}")

    async def stop(self) -> None:
        self._stopping = True
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    async def _run(self) -> None:
        while not self._stopping:
            url = self.url
            try:
                ws = await websockets.connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {self.token}"},
                    max_size=None,
                    open_timeout=5,
                    close_timeout=2,
                )
            except InvalidStatus as exc:
                self.handshake_failures.append(
                    HandshakeFailed(str(exc), exc.response.status_code, time.monotonic(), url)
                )
                await asyncio.sleep(self.retry_delay)
                continue
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                # Nobody listening (a stopped process): try the next one, as a load balancer would.
                self.handshake_failures.append(HandshakeFailed(repr(exc), None, time.monotonic(), url))
                self.url_index += 1
                await asyncio.sleep(self.retry_delay)
                continue
            self.ws = ws
            code: int | None = None
            try:
                await ws.send(protocol.sync_step1(self.doc.get_state()))
                while True:
                    await self._handle(ws, await ws.recv())
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
            except Exception as exc:  # a frame this client cannot take: the test reports it
                self.fatal = f"{self.name}: {exc!r}"
                with contextlib.suppress(Exception):
                    await ws.close()
                return
            finally:
                self.ws = None
                self.synced = False
            self.closes.append(Closed(code, time.monotonic(), url))
            if self._stopping:
                return
            if code == codes.GOING_AWAY:
                self.url_index += 1
            elif code is not None and code not in codes.RETRYABLE:
                self.fatal = f"{self.name}: closed with {code}, which a client must not retry"
                return
            await asyncio.sleep(self.retry_delay)

    async def _handle(self, ws: Any, frame: str | bytes) -> None:
        if isinstance(frame, str):
            raise AssertionError(f"{self.name}: a text frame on a y-websocket socket: {frame[:100]!r}")
        message = protocol.parse(frame)
        if isinstance(message, protocol.SyncStep1):
            await ws.send(protocol.sync_step2(self.doc.get_update(message.state_vector)))
        elif isinstance(message, protocol.SyncStep2):
            self.doc.apply_update(message.update)
            self.synced = True
            self.syncs.append(time.monotonic())
        elif isinstance(message, protocol.SyncUpdate):
            self.doc.apply_update(message.update)

    async def edit(self, value: str) -> None:
        """Type `value` at the end; sent at once when connected, else on the next sync."""
        before = self.doc.get_state()
        self.text.insert(len(self.text), value)
        self.made.append(value)
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(protocol.sync_update(self.doc.get_update(before)))

    def closes_after(self, moment: float) -> list[Closed]:
        return [closed for closed in self.closes if closed.at >= moment]

    def synced_after(self, moment: float) -> bool:
        return self.synced and any(at >= moment for at in self.syncs)

    def missing(self, tokens: Iterable[str]) -> list[str]:
        text = str(self.text)
        return [token for token in tokens if token not in text]


async def start_editing(a: Editor, b: Editor, stop: asyncio.Event, typing: list[asyncio.Task[None]]) -> None:
    """Both editors connect, sync and type continuously (tasks into `typing`), until each sees the other's edits."""
    editors = (a, b)
    for editor in editors:
        editor.start()
    await wait_for(lambda: a.synced and b.synced, 15, lambda: f"editors did not sync: {describe(editors)}")
    typing.extend(asyncio.create_task(type_continuously(editor, stop, interval=0.04, limit=2000)) for editor in editors)
    await wait_for(
        lambda: len(a.made) >= 20 and len(b.made) >= 20 and not a.missing(b.made[:10]) and not b.missing(a.made[:10]),
        15,
        lambda: f"edits did not reach the other editor: {describe(editors)}",
    )


async def type_continuously(editor: Editor, stop: asyncio.Event, *, interval: float, limit: int) -> None:
    """One token every `interval` seconds, "[<name><n>]", until `stop` is set (or `limit` tokens)."""
    for n in range(limit):
        if stop.is_set():
            return
        await editor.edit(f"[{editor.name}{n}]")
        await asyncio.sleep(interval)


async def read_document(ws_url: str, document_id: int, token: str, seconds: float = 15) -> str:
    """What a fresh client sees: connect, sync, read the text."""
    async with websockets.connect(
        f"{ws_url}/ws/docs/{document_id}",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
        open_timeout=10,
    ) as ws:
        client = RawClient(ws)
        await ws.send(protocol.sync_step1(client.doc.get_state()))
        await client.run_until(lambda: client.synced, seconds=seconds)
        return str(client.text)


def describe(editors: Iterable[Editor]) -> str:
    return "; ".join(
        f"{e.name}: made {len(e.made)}, closes {[c.code for c in e.closes]}, "
        f"handshake failures {len(e.handshake_failures)} "
        f"(statuses {sorted({f.status for f in e.handshake_failures if f.status is not None})}), "
        f"synced={e.synced}, fatal={e.fatal}"
        for e in editors
    )


# --- A /ws/ client speaking the JSON envelope protocol -----------------------------------------------


class Envelope:
    """A real-time socket: every frame it receives is kept, answers are matched to requests by id."""

    def __init__(self, ws: Any, name: str) -> None:
        self.ws = ws
        self.name = name
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._next = 0
        self._reader = asyncio.get_running_loop().create_task(self._read(), name=f"envelope-{name}")

    @classmethod
    async def connect(cls, ws_url: str, token: str, name: str) -> Envelope:
        ws = await websockets.connect(
            f"{ws_url}/ws/", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
        )
        return cls(ws, name)

    async def _read(self) -> None:
        try:
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                header = frame["header"]
                waiter = self._answers.pop(str(header.get("id")), None)
                if waiter is not None and header["type"] in {"ack", "error"} and not waiter.done():
                    waiter.set_result(frame)
        except ConnectionClosed as exc:
            self.close_code = exc.rcvd.code if exc.rcvd is not None else None
        finally:
            self.closed.set()
            for waiter in self._answers.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError(f"{self.name}: socket closed ({self.close_code})"))

    async def call(self, kind: str, payload: Any = None, *, within: float, **header: Any) -> dict[str, Any]:
        """Send a frame; its ack or error (AssertionError if none arrives `within` seconds: a hang)."""
        self._next += 1
        frame_id = f"{self.name}{self._next}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[frame_id] = waiter
        try:
            await self.ws.send(json.dumps({"header": {"type": kind, "id": frame_id, **header}, "payload": payload}))
        except ConnectionClosed as exc:
            self._answers.pop(frame_id, None)
            await self.closed.wait()
            if waiter.done():
                waiter.exception()  # the reader failed it already: retrieved, not "never retrieved"
            else:
                waiter.cancel()
            raise ConnectionError(f"{self.name}: socket closed ({self.close_code})") from exc
        try:
            return await asyncio.wait_for(waiter, within)
        except TimeoutError:
            raise AssertionError(f"{self.name}: no answer to {kind} {header} within {within} s") from None
        finally:
            self._answers.pop(frame_id, None)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["header"]["type"] == kind]

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
