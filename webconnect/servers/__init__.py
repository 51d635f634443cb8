"""The ASGI servers `manage.py serve` can run webconnect.asgi:application under, one module each.

Every adapter applies the same settings: WebSocket message and frame limits
(WEBSOCKET_MAX_MESSAGE_SIZE / WEBSOCKET_MAX_FRAME_SIZE), the ping interval and
timeout below, the listen backlog, no proxy-header rewriting (webconnect.identity
reads X-Forwarded-For per TRUSTED_PROXY_COUNT), a deadline for request headers
(HTTP_HEADER_TIMEOUT) and a drain on SIGTERM through webconnect.kernel.startup.shutdown().
"""

from __future__ import annotations

import importlib
import os

SERVERS = ("daphne", "uvicorn", "granian")
CHOSEN = "daphne"  # by measurement: bench/README.md, "Choosing the server"
# WEBCONNECT_SERVER overrides it for a deployment (or a test or benchmark run) without a flag.
DEFAULT = os.environ.get("WEBCONNECT_SERVER") or CHOSEN

PING_INTERVAL = 20  # seconds between server pings on an idle socket
PING_TIMEOUT = 30  # a socket that does not answer within this is dropped
BACKLOG = 2048  # Daphne's default (50) refused handshakes in bursts


def application_path() -> str:
    """The ASGI application, as "module:attribute" (tests add an echo route: tests/settings.py)."""
    from django.conf import settings

    return str(getattr(settings, "SERVE_APPLICATION", "webconnect.asgi:application"))


def run(server: str, host: str, port: int) -> None:
    importlib.import_module(f"webconnect.servers.{server}").run(host, port)
