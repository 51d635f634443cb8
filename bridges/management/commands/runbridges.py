from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from bridges.runner import NotConfigured, run_bridges


class Command(BaseCommand):
    help = "Run the RabbitMQ and MQTT bridges (one active per deployment; more wait as standbys). Stops on SIGTERM."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            asyncio.run(_main())
        except NotConfigured as exc:
            raise CommandError(str(exc)) from exc


async def _main() -> None:
    task = asyncio.ensure_future(run_bridges())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    # Asked to stop: unconfirmed messages stay in the outbox for the next runner.
    with contextlib.suppress(asyncio.CancelledError):
        await task
