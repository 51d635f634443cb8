"""Granian, embedded: its Rust HTTP/WebSocket core serves our asyncio loop in this process.

Embedded (not Granian's process manager) so the process that serves is the one that
drains: SIGTERM runs the kernel's shutdown phases, then stops Granian. Granian has
no WebSocket message-size setting: WEBSOCKET_MAX_MESSAGE_SIZE is not enforced at the
transport (the session's own frame limits still apply), nor is the anonymous cap.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal

from django.conf import settings
from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server

from webconnect.kernel import startup
from webconnect.servers import BACKLOG, application_path

logger = logging.getLogger(__name__)


async def serve(host: str, port: int) -> None:
    module, _, attribute = application_path().partition(":")
    application = getattr(importlib.import_module(module), attribute)
    server = Server(
        application,
        address=host,
        port=port,
        interface=Interfaces.ASGINL,  # no lifespan: the kernel starts on the first connection
        websockets=True,
        backlog=BACKLOG,
        # Requests (and WebSocket messages) in flight per worker before Granian stops reading.
        backpressure=int(os.environ.get("GRANIAN_BACKPRESSURE", "0")) or None,
        http1_settings=HTTP1Settings(
            header_read_timeout=settings.HTTP_HEADER_TIMEOUT * 1000,
            max_buffer_size=int(os.environ.get("GRANIAN_HTTP1_BUFFER", str(64 * 1024))),
        ),
        log_enabled=False,
    )
    loop = asyncio.get_running_loop()

    async def drain() -> None:
        logger.info("draining: closing sockets with 4501 after flushing document commits")
        await startup.shutdown()
        server.stop()  # type: ignore[no-untyped-call]

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: startup.spawn(drain()))
    await server.serve()


def run(host: str, port: int) -> None:
    import uvloop

    uvloop.run(serve(host, port))
