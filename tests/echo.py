"""Test-only ASGI application: webconnect's, plus a bare WebSocket echo at `/` for conformance suites.

tests/settings.py points the servers at it (SERVE_APPLICATION), so the echo route exists only in
test settings. The Autobahn cases (`kosoku`) need a server that echoes every message, text or binary,
empty ones included; webconnect's own routes speak the JSON envelope protocol.
"""

from __future__ import annotations

from typing import Any

from webconnect.asgi import application as webconnect_application

ECHO_PATH = "/"


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        event = await receive()
        if event["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif event["type"] == "websocket.receive":
            if event.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": event["bytes"]})
            else:
                await send({"type": "websocket.send", "text": event.get("text") or ""})
        elif event["type"] == "websocket.disconnect":
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket" and scope["path"] == ECHO_PATH:
        await echo(scope, receive, send)
    else:
        await webconnect_application(scope, receive, send)
