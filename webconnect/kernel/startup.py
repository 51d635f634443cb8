"""One per-process start-up path for background tasks, and a graceful shutdown.

Apps register their long-running tasks (the policy poller, the dashboards
recorder and ops publisher, ...) with `register()` from `AppConfig.ready()`.
`StartupMiddleware` wraps the ASGI application: the first connection of any
kind served on an event loop starts the bus and every registered task there
(Daphne has no lifespan hook). In-process test clients that call consumers
directly never start them.

`shutdown()` (run by `manage.py serve` on SIGTERM) refuses new sockets, runs
the apps' shutdown hooks (collab flushes pending document commits), closes
every socket with GOING_AWAY so clients reconnect elsewhere, and returns
within `SHUTDOWN_GRACE_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from webconnect.kernel.bus import get_bus

logger = logging.getLogger(__name__)

TaskFactory = Callable[[], Awaitable[None]]
ShutdownHook = Callable[[], Awaitable[None]]

_factories: dict[str, TaskFactory] = {}
_shutdown_hooks: dict[str, tuple[int, ShutdownHook]] = {}
_started: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_tasks: set[asyncio.Task[Any]] = set()
shutting_down = False


def register(name: str, factory: TaskFactory) -> None:
    """A coroutine function run once per server event loop for the life of the process."""
    _factories[name] = factory


# Shutdown phases, run in order.
FLUSH = 0  # commit what was accepted
CLOSE = 1  # close sockets with GOING_AWAY
FLUSH_AGAIN = 2  # what arrived while closing


def on_shutdown(name: str, hook: ShutdownHook, phase: int = FLUSH) -> None:
    _shutdown_hooks[name] = (phase, hook)


def spawn(coro: Awaitable[Any]) -> asyncio.Task[Any]:
    """A fire-and-forget task on the running loop that is kept alive and whose failure is logged."""
    task = asyncio.ensure_future(coro)
    _tasks.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _tasks.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task %s stopped", task.get_name(), exc_info=task.exception())


async def ensure_started() -> None:
    """Bind the bus to this loop (sessions call this; cheap once done).

    It does not wait for Redis: a socket opens while Redis is down, and what
    needs the bus answers `unavailable` (or, for documents, closes 4503).
    """
    await get_bus().start(wait=False)


def start_background(loop: asyncio.AbstractEventLoop) -> bool:
    """Start every registered task on `loop` unless already running there; True if started now."""
    if loop in _started or not settings.KERNEL_BACKGROUND_TASKS:
        return False
    _started.add(loop)
    for name, factory in _factories.items():
        # A fresh context each: not the context of the request that happened to start them.
        task = loop.create_task(_run_forever(name, factory), name=name, context=contextvars.Context())
        _tasks.add(task)
        task.add_done_callback(_finished)
    return True


async def _run_forever(name: str, factory: TaskFactory) -> None:
    # A task that fails is restarted after a pause, so one bad moment (a database
    # restart) does not leave the process without its recorder or poller.
    while True:
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("background task %s failed; restarting in 5 s", name)
            await asyncio.sleep(5)


class StartupMiddleware:
    """Starts the per-process background tasks on the first connection of any kind."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in {"http", "websocket"}:
            loop = asyncio.get_running_loop()
            if loop not in _started:
                start_background(loop)
        return await self.inner(scope, receive, send)


async def shutdown(grace: float | None = None) -> None:
    """Drain this process: flush what was accepted, close sockets with GOING_AWAY."""
    global shutting_down
    shutting_down = True
    grace = settings.SHUTDOWN_GRACE_SECONDS if grace is None else grace

    async def drain() -> None:
        for name, (_, hook) in sorted(_shutdown_hooks.items(), key=lambda item: item[1][0]):
            try:
                await hook()
            except Exception:
                logger.exception("shutdown hook %s failed", name)

    try:
        await asyncio.wait_for(drain(), grace)
    except TimeoutError:
        logger.error("shutdown: not drained within %.0f s; exiting anyway", grace)
    for task in list(_tasks):
        task.cancel()
