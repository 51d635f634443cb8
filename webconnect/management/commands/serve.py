"""Run Daphne with the limits from settings, so every way of serving uses the same ones."""

from __future__ import annotations

from typing import Any

from daphne.cli import CommandLineInterface
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser


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
        # entry, which the client writes; webconnect.net reads it per TRUSTED_PROXY_COUNT.
        CommandLineInterface().run([*argv, "webconnect.asgi:application"])
