"""Brokers of the test's own (RabbitMQ, Mosquitto) and the bridge runner as a real process.

The machine's RabbitMQ (5672) and Mosquitto (1883) are never touched: a test that restarts a broker starts
its own on free ports below the ephemeral range (an Erlang node's own outgoing connections can hold a port
picked from that range in TIME_WAIT, and RabbitMQ then fails to listen on it after a restart).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.conftest import ARTIFACTS, ROOT

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")


def fresh(name: str) -> str:
    """`name` made unique: channel history in Redis outlives a test's database flush (and a rerun)."""
    return f"{name}{uuid.uuid4().hex[:8]}"


def low_free_port() -> int:
    """A free port in 20000-32000 (outside Linux's ephemeral range)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in (25672,):  # the machine's RabbitMQ distribution port
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def wait_port(port: int, timeout: float, process: subprocess.Popen[bytes] | None = None) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process on {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return time.monotonic() - started
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@dataclass
class PrivateRabbitMQ:
    """A RabbitMQ node with its own name, ports, database and cookie (HOME): restartable with its queues."""

    port: int = field(default_factory=low_free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wc-rabbitmq-")))
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.dist_port = low_free_port()
        self.node = f"wctest{self.port}@localhost"
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.root / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root),  # the node's Erlang cookie lives here, not in the machine's
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
        }

    def start(self, timeout: float = 90) -> float:
        """Start (or restart) the node; the seconds until it accepted connections (about 10 s here)."""
        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / f"rabbitmq-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")], env=self.env(), stdout=log, stderr=subprocess.STDOUT
            )
        return wait_port(self.port, timeout, self.process)

    def stop(self) -> None:
        """A clean stop (messages of durable queues are kept for the restart)."""
        if self.process is None or self.process.poll() is not None:
            return
        subprocess.run(
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, "stop"],
            env=self.env(), capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class PrivateMosquitto:
    """A Mosquitto broker with persistence (sessions and queued QoS 1 messages survive a restart)."""

    port: int = field(default_factory=low_free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wc-mosquitto-")))
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        (self.root / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.root}/\nmax_queued_messages 100000\n"
        )
        # Started as root, Mosquitto drops to its own account, which must be able to write its database here.
        if os.geteuid() == 0:
            with contextlib.suppress(KeyError):
                account = pwd.getpwnam("mosquitto")
                os.chown(self.root, account.pw_uid, account.pw_gid)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> float:
        ARTIFACTS.mkdir(exist_ok=True)
        with (ARTIFACTS / f"mosquitto-{self.port}.log").open("ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.root / "mosquitto.conf")], stdout=log, stderr=subprocess.STDOUT
            )
        return wait_port(self.port, timeout, self.process)

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file, then exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Runner:
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def own_redis_prefix() -> dict[str, str]:
    """Redis keys of this test's server and runner alone: the bridges' lease, status and outbox of an
    earlier test's runner (its "up" status lives on for seconds) must not answer for this one."""
    return {"REALTIME_REDIS_PREFIX_OWN": f"bridges-{uuid.uuid4().hex[:8]}:rt"}


def start_runner(database_name: str, env: dict[str, str]) -> Runner:
    """`manage.py runbridges` on the test database, as a real process."""
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / f"runbridges-{time.monotonic_ns()}.log"
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "WEBCONNECT_TEST_DATABASE_NAME": database_name,
        **env,
    }
    full_env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runbridges"], cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    return Runner(process, log_path)


# --- Talking to a live server -----------------------------------------------------------------


def metric(server_url: str, name: str, target: str) -> float | None:
    text = requests.get(f"{server_url}/metrics", timeout=10).text
    found = re.search(rf'^{name}\{{target="{target}"\}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else None


def wait_until(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"after {seconds} s: {what}")


def publish(server_url: str, token: str, channel: str, payload: Any) -> str:
    """A REST publish; the id the platform acknowledged (epoch:offset)."""
    response = requests.post(
        f"{server_url}/api/channels/{channel}/publish/",
        data=json.dumps(payload),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return f"{response.json()['epoch']}:{response.json()['offset']}"


def history(server_url: str, token: str, channel: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{server_url}/api/channels/{channel}/history/?limit=50",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])
