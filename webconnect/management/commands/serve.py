"""Serve HTTP and WebSocket under the production server (or another supported one), draining on SIGTERM."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from webconnect import servers


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket (webconnect.asgi:application) with the chosen ASGI server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--server",
            choices=servers.SERVERS,
            default=servers.DEFAULT,
            help=f"ASGI server (default {servers.DEFAULT}, chosen by measurement; see bench/README.md)",
        )

    def handle(self, *args: Any, host: str, port: int, server: str, **options: Any) -> None:
        servers.run(server, host, port)
