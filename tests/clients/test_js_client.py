"""The JavaScript client (clients/js/) under Node's test runner, against live server processes.

The Node tests live in clients/js/test/; these start the servers, hand the Node process a token
and the addresses, and for the restart test a small control endpoint through which the Node test
stops and starts server A (same port) while it publishes on server B.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.db import connection

from tests.conftest import ARTIFACTS, ROOT, LiveServer, start_server

pytestmark = pytest.mark.django_db(transaction=True)

TESTS = ROOT / "clients" / "js" / "test" / "client.test.mjs"
WS_MODULE = ROOT / "frontend" / "node_modules" / "ws" / "index.js"
REQUIRE_NODE = any(
    os.environ.get(name, "").lower() in {"1", "true", "yes"}
    for name in ("WEBCONNECT_REQUIRE_NODE", "CI", "WEBCONNECT_REQUIRE_SERVICES")
)


def node() -> str:
    found = shutil.which("node")
    if found is None:
        message = "Node is not installed (needed for the JavaScript client's tests)"
        if REQUIRE_NODE:
            pytest.fail(f"{message}, and this is CI: a skipped Node test fails", pytrace=False)
        pytest.skip(message)
    return found


def node_flags(binary: str) -> list[str]:
    """Node 20 has a global WebSocket only behind a flag; 22+ has it; 18 uses `ws` (WEBCONNECT_WS_MODULE)."""
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(version.strip().lstrip("v").split(".")[0])
    return ["--experimental-websocket"] if major in (20, 21) else []


def run_node(env: dict[str, str], *args: str, timeout: float = 120) -> None:
    binary = node()
    command = [binary, *node_flags(binary), "--test", *args, str(TESTS)]
    result = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, "WEBCONNECT_WS_MODULE": str(WS_MODULE), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "# fail 0" in output, output[-6000:]


@pytest.fixture
def token(alice: Any, mint_token: Callable[..., str]) -> str:
    return mint_token("alice", "realtime:read realtime:write")


def test_the_js_client_over_websocket_and_its_sse_fallback(live_daphne: LiveServer, token: str) -> None:
    run_node({"WEBCONNECT_WS": live_daphne.ws_url, "WEBCONNECT_TOKEN": token}, "--test-name-pattern=^(?!reconnects)")


class Restartable:
    """Server A: stopped (SIGTERM, so it drains) and started again on the same port on request."""

    def __init__(self, database_name: str) -> None:
        self.database_name = database_name
        self.server = start_server(database_name)
        self.port = self.server.port

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "WEBCONNECT_TEST_DATABASE_NAME": self.database_name,
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        log_path = ARTIFACTS / f"daphne-{self.port}-restarted.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.server = LiveServer(process, self.port, log_path)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server A did not start again")


@pytest.fixture
def control(django_db_setup: Any) -> Iterator[tuple[Restartable, str]]:
    server = Restartable(str(connection.settings_dict["NAME"]))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            action = {"/stop": server.stop, "/start": server.start}.get(self.path)
            if action is None:
                self.send_response(404)
            else:
                action()
                self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{http.server_address[1]}"
    finally:
        http.shutdown()
        http.server_close()
        server.stop()


@pytest.mark.services
def test_the_js_client_reconnects_across_a_server_restart_with_no_gap(
    control: tuple[Restartable, str], live_daphne: LiveServer, token: str
) -> None:
    server_a, control_url = control
    run_node(
        {
            "WEBCONNECT_WS": f"ws://127.0.0.1:{server_a.port}",
            "WEBCONNECT_TOKEN": token,
            "WEBCONNECT_HTTP_B": live_daphne.url,
            "WEBCONNECT_CONTROL": control_url,
        },
        "--test-name-pattern=reconnects",
    )
