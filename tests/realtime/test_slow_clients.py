"""Slow-header clients (slowloris) are closed by the server itself, on plain HTTP and on the upgrade.

Before, Twisted's idle timeout (reset by every byte) was the only bound: a client sending one
header line every 5 s stayed open indefinitely.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

import pytest

from tests.conftest import LiveServer

HEADER_TIMEOUT = 2  # seconds (HTTP_HEADER_TIMEOUT of the server under test); small to keep the test short


@pytest.fixture(scope="module")
def server(live_server_factory: Callable[..., LiveServer]) -> LiveServer:
    return live_server_factory(HTTP_HEADER_TIMEOUT=str(HEADER_TIMEOUT), HTTP_IDLE_TIMEOUT="30")


def trickle(server: LiveServer, first: bytes, *, every: float = 0.5, limit: float = 10) -> float:
    """Send `first`, then one more header line every `every` seconds; seconds until the server closes."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=limit) as sock:
        sock.sendall(first)
        sock.settimeout(every)
        n = 0
        while time.monotonic() - started < limit:
            try:
                if sock.recv(4096) == b"":
                    break
            except TimeoutError:
                pass
            except ConnectionError:
                break
            n += 1
            try:
                sock.sendall(f"X-Slow-{n}: {'a' * 10}\r\n".encode())
            except ConnectionError:
                break
    return time.monotonic() - started


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", id="http"),
        pytest.param(
            b"GET /ws/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
            id="websocket-upgrade",
        ),
    ],
)
def test_a_client_trickling_header_lines_is_closed_within_the_header_timeout(server: LiveServer, first: bytes) -> None:
    elapsed = trickle(server, first)
    assert HEADER_TIMEOUT - 0.5 <= elapsed <= HEADER_TIMEOUT + 2, elapsed


def test_complete_requests_are_served_and_a_kept_alive_connection_gets_the_same_deadline(server: LiveServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /accounts/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = b""
        while b"</html>" not in response:
            chunk = sock.recv(65536)
            assert chunk, response[:200]
            response += chunk
        assert response.startswith(b"HTTP/1.1 200")
        # The next request on the same connection: its headers never complete, so it is closed too.
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        sock.settimeout(HEADER_TIMEOUT + 3)
        with contextlib.suppress(ConnectionError):
            assert sock.recv(4096) == b""
        assert time.monotonic() - started <= HEADER_TIMEOUT + 2
