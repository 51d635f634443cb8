"""uvicorn (httptools, uvloop) with the limits from settings and the kernel's drain on SIGTERM.

`UVICORN_WS` picks the WebSocket implementation: `websockets` (the default),
`websockets-sansio` or `wsproto`; the anonymous-socket message cap applies to
the `websockets` one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import uvicorn
from django.conf import settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_impl import WebSocketProtocol

from webconnect.kernel import startup
from webconnect.servers import BACKLOG, PING_INTERVAL, PING_TIMEOUT, application_path

logger = logging.getLogger(__name__)


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """Close a connection whose request headers are not complete within HTTP_HEADER_TIMEOUT.

    uvicorn has no such limit (its keep-alive timeout only runs between requests), so a
    slowloris client holds a connection forever. A deadline, not an idle timer: started when
    the connection opens and after each response on a kept-alive connection.
    """

    header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._start_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._start_deadline()  # the next request's headers get the same deadline

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def _start_deadline(self) -> None:
        self._cancel_deadline()
        self.header_deadline = self.loop.call_later(settings.HTTP_HEADER_TIMEOUT, self._expire)

    def _cancel_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _expire(self) -> None:
        self.header_deadline = None
        logger.info("closing %s: request headers not complete within %ss", self.client, settings.HTTP_HEADER_TIMEOUT)
        self.transport.abort()


def offers_credential(headers: Any, query: str) -> bool:
    if "authorization" in headers or "ticket=" in query:
        return True
    return f"{settings.SESSION_COOKIE_NAME}=" in headers.get("cookie", "")


class CappedWebSocketProtocol(WebSocketProtocol):
    """A socket without any credential may only send small messages (4x the application's frame limit)."""

    async def process_request(self, path: str, request_headers: Any) -> Any:
        if not offers_credential(request_headers, path.partition("?")[2]):
            cap = 4 * settings.REALTIME_ANONYMOUS_MAX_FRAME_BYTES
            self.max_size = min(self.max_size or cap, cap)
        return await super().process_request(path, request_headers)


class DrainingServer(uvicorn.Server):
    """On SIGTERM: stop accepting, run the kernel's shutdown phases (flush, close with 4501, flush), then exit."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        logger.info("draining: closing sockets with 4501 after flushing document commits")
        await startup.shutdown()
        await super().shutdown(sockets)
        # uvicorn re-raises the captured SIGTERM once served, so the process would die of it (-15);
        # a drained process exits 0, as under Daphne.
        self._captured_signals.clear()


def config(host: str, port: int) -> uvicorn.Config:
    implementation = os.environ.get("UVICORN_WS", "websockets")
    return uvicorn.Config(
        application_path(),
        host=host,
        port=port,
        loop="uvloop",
        http=DeadlineHttpToolsProtocol,
        ws=CappedWebSocketProtocol if implementation == "websockets" else implementation,
        ws_max_size=settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE,
        # Messages buffered per socket before reading stops (the session reads them promptly).
        ws_max_queue=int(os.environ.get("UVICORN_WS_MAX_QUEUE", "4")),
        ws_ping_interval=PING_INTERVAL,
        ws_ping_timeout=PING_TIMEOUT,
        # Off unless WEBSOCKET_DEFLATE (as under Daphne); websockets' defaults are window 2^12, memLevel 5.
        ws_per_message_deflate=settings.WEBSOCKET_DEFLATE,
        lifespan="off",  # the kernel starts on the first connection (kernel/startup.py)
        proxy_headers=False,  # webconnect.identity reads X-Forwarded-For per TRUSTED_PROXY_COUNT
        server_header=False,
        backlog=BACKLOG,
        timeout_keep_alive=settings.HTTP_IDLE_TIMEOUT,
        timeout_graceful_shutdown=settings.SHUTDOWN_GRACE_SECONDS,
        log_config=None,
        access_log=False,
    )


def run(host: str, port: int) -> None:
    DrainingServer(config(host, port)).run()
