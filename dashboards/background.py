"""Per-process background tasks (the recorder and the ops publisher), started once per event loop.

Daphne has no start-up hook, so the first HTTP request served on the server's
event loop starts them (Django sends `request_started` with `asend` there, and
an async receiver runs on that loop). Test clients are other senders and never start them.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_started
from django.dispatch import receiver

logger = logging.getLogger(__name__)
_started: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_tasks: set[asyncio.Task[None]] = set()


def start(loop: asyncio.AbstractEventLoop) -> bool:
    """Start the tasks on `loop` unless already running there; True if started now."""
    if loop in _started:
        return False
    _started.add(loop)
    from dashboards import ops, recorder

    for coro in (recorder.run(recorder.Recorder()), ops.run()):
        task = loop.create_task(coro)
        _tasks.add(task)
        task.add_done_callback(_finished)
    return True


def _finished(task: asyncio.Task[None]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("dashboards background task stopped", exc_info=task.exception())


# Only for the ASGI handler itself: a receiver for every sender would make each
# synchronous request (the test client, WSGI) run it through async_to_sync.
@receiver(request_started, sender=ASGIHandler)
async def start_on_first_request(sender: Any, **kwargs: Any) -> None:
    if not getattr(settings, "DASHBOARDS_BACKGROUND", True):
        return
    start(asyncio.get_running_loop())
