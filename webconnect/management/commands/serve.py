"""Run Daphne with the limits from settings, and drain gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.server import Server
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from twisted.internet import defer

from webconnect.kernel import startup

logger = logging.getLogger(__name__)


class DrainingServer(Server):  # type: ignore[misc]
    """Daphne, but SIGTERM first drains: stop accepting, flush document commits, close sockets with 4501."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ports: list[Any] = []

    def listen_success(self, port: Any) -> None:
        self._ports.append(port)
        super().listen_success(port)

    def kill_all_applications(self) -> Any:
        # Twisted runs this "before shutdown" and waits for the Deferred it returns.
        return defer.Deferred.fromFuture(asyncio.ensure_future(self._drain_then_kill()))

    async def _drain_then_kill(self) -> None:
        for port in self._ports:
            try:
                await defer.maybeDeferred(port.stopListening).asFuture(asyncio.get_running_loop())
            except Exception:
                logger.exception("could not stop listening on %s", port)
        logger.info("draining: closing sockets with 4501 after flushing document commits")
        await startup.shutdown()
        killed = super().kill_all_applications()
        await killed.asFuture(asyncio.get_running_loop())


class DrainingCommandLine(CommandLineInterface):  # type: ignore[misc]
    server_class = DrainingServer


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket with Daphne."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, host: str, port: int, **options: Any) -> None:
        argv = [
            "--bind",
            host,
            "--port",
            str(port),
            "--websocket-max-message-size",
            str(settings.DAPHNE_WEBSOCKET_MAX_MESSAGE_SIZE),
            "--websocket-max-frame-size",
            str(settings.DAPHNE_WEBSOCKET_MAX_FRAME_SIZE),
            "--ping-interval",
            "20",
            "--ping-timeout",
            "30",
        ]
        # No --proxy-headers: Daphne would trust the left-most X-Forwarded-For
        # entry, which the client writes; webconnect.identity reads it per TRUSTED_PROXY_COUNT.
        DrainingCommandLine().run([*argv, "webconnect.asgi:application"])
