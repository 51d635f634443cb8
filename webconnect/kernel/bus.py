"""The one bus between processes: channel messages, document relay and control messages.

Services mode: one Redis pub/sub connection per process, with two pattern
subscriptions — `<prefix>:pub:*` (channel messages, published by the history's
Lua script as "<offset> <frame>") and `<prefix>:bus:<kind>:<key>` (everything
else: document updates and awareness, revocations, policy changes). Embedded
mode has one process, so a publish is a direct call on its event loop.

One reconnect story for all of it: when the subscription breaks, the bus is
"not ready" until both patterns are confirmed again; callers that must not act
before this process hears a topic again (a `subscribe` ack) wait with
`wait_ready()`, and `on_reconnect` callbacks fill what may have been missed
(channel history, the document log).

Handlers run on the process's event loop, never in a request's thread:
`publish_threadsafe` is how sync code (signal receivers, admin saves) reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None] | None]
ReconnectCallback = Callable[[], Awaitable[None]]

CHANNEL_MESSAGES = "pub"  # kind of the messages the history script publishes


class BusUnavailable(Exception):
    """Redis cannot be reached: nothing published now reaches other processes."""


class Bus:
    def __init__(self) -> None:
        self.process_id = secrets.token_hex(8)
        self.redis: Any = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.generation = 0  # how many times the subscription was (re)established
        self._handlers: dict[str, Handler] = {}
        self._reconnect: list[ReconnectCallback] = []
        self._lost: list[Callable[[], None]] = []
        self._ready: asyncio.Event | None = None
        self._listener: asyncio.Task[None] | None = None
        self._sync_redis: Any = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def distributed(self) -> bool:
        return bool(settings.REDIS_URL)

    @property
    def prefix(self) -> str:
        return str(settings.REALTIME_REDIS_PREFIX)

    def topic(self, kind: str, key: str) -> str:
        if kind == CHANNEL_MESSAGES:
            return f"{self.prefix}:pub:{key}"
        return f"{self.prefix}:bus:{kind}:{key}"

    # --- Registration (from AppConfig.ready() or module import) -------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Route messages of `kind` to `handler(key, data)` (sync and quick, or a coroutine)."""
        self._handlers[kind] = handler

    def on_reconnect(self, callback: ReconnectCallback) -> None:
        """Run after the subscription is back, to fill what may have been missed."""
        if callback not in self._reconnect:
            self._reconnect.append(callback)

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Run (sync, quick) the moment the subscription breaks, before anything new arrives."""
        if callback not in self._lost:
            self._lost.append(callback)

    # --- Start and readiness ----------------------------------------------------------------

    async def start(self, *, wait: bool = True) -> None:
        """Bind to the running loop and (services mode) subscribe; `wait`: until subscribed."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop = loop
            self._ready = asyncio.Event()
            if self.distributed:
                import redis.asyncio as aioredis

                self.redis = aioredis.Redis.from_url(
                    settings.REDIS_URL, socket_connect_timeout=5, health_check_interval=10
                )
                # Its own context, not the first caller's (handlers run in it).
                self._listener = loop.create_task(self._listen(self.redis, self._ready), context=contextvars.Context())
            else:
                self._ready.set()
        if wait:
            await self.wait_ready()

    async def wait_ready(self, within: float | None = None) -> None:
        """Return once this process receives what is published; BusUnavailable after `within` seconds."""
        assert self._ready is not None, "Bus.start() first"
        if self._ready.is_set():
            return
        wait = settings.REALTIME_BUS_READY_TIMEOUT if within is None else within
        try:
            await asyncio.wait_for(self._ready.wait(), wait)
        except TimeoutError:
            raise BusUnavailable("the message bus (Redis) is unavailable") from None

    async def _listen(self, client: Any, ready: asyncio.Event) -> None:
        patterns = (f"{self.prefix}:pub:*", f"{self.prefix}:bus:*")
        pub_head = f"{self.prefix}:pub:".encode()
        bus_head = f"{self.prefix}:bus:".encode()
        while True:
            pubsub = client.pubsub()
            try:
                await pubsub.psubscribe(*patterns)
                confirmed = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "pmessage":
                        self._route(message["channel"], message["data"], pub_head, bus_head)
                    elif kind == "psubscribe":
                        confirmed += 1
                        if confirmed == len(patterns):
                            self._subscribed(ready)
            except asyncio.CancelledError:
                with contextlib.suppress(BaseException):
                    await pubsub.aclose()
                raise
            except Exception as exc:
                if ready.is_set():
                    logger.warning("message bus: Redis subscription lost (%s); reconnecting", exc)
                    for lost in list(self._lost):
                        try:
                            lost()
                        except Exception:
                            logger.exception("message bus: on_lost callback failed")
                ready.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
                await asyncio.sleep(0.5)

    def _subscribed(self, ready: asyncio.Event) -> None:
        self.generation += 1
        ready.set()
        if self.generation > 1:
            logger.info("message bus: Redis subscription is back; filling what may have been missed")
            for callback in list(self._reconnect):
                self._spawn(callback())

    def _route(self, topic: bytes, data: bytes, pub_head: bytes, bus_head: bytes) -> None:
        try:
            if topic.startswith(pub_head):
                self._dispatch(CHANNEL_MESSAGES, topic[len(pub_head) :].decode(), data)
            elif topic.startswith(bus_head):
                kind, _, key = topic[len(bus_head) :].decode().partition(":")
                self._dispatch(kind, key, data)
        except Exception:
            logger.exception("message bus: handling a message on %r failed", topic[:200])

    def _dispatch(self, kind: str, key: str, data: bytes) -> None:
        handler = self._handlers.get(kind)
        if handler is None:
            return
        result = handler(key, data)
        if result is not None:
            self._spawn(result)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("message bus handler failed", exc_info=task.exception())

    # --- Publishing ---------------------------------------------------------------------------

    async def publish(self, kind: str, key: str, data: bytes) -> None:
        """To every process (this one included); raises BusUnavailable when Redis is down."""
        if not self.distributed:
            self._dispatch(kind, key, data)
            return
        await self.start()
        try:
            await self.redis.publish(self.topic(kind, key), data)
        except Exception as exc:
            raise BusUnavailable(str(exc)) from exc

    def publish_threadsafe(self, kind: str, key: str, data: bytes) -> None:
        """From sync code in any thread; handlers still run on the server's event loop."""
        if self.distributed:
            try:
                self._sync_client().publish(self.topic(kind, key), data)
            except Exception as exc:
                raise BusUnavailable(str(exc)) from exc
            return
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return  # no server loop in this process (a management command): nobody to tell
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        # A fresh context: the caller's (a request's sync_to_async thread) must not
        # leak into the handler, or its database calls would try to run in that
        # request's (finished) thread executor.
        if running is loop:
            loop.call_soon(self._dispatch, kind, key, data, context=contextvars.Context())
        else:
            loop.call_soon_threadsafe(self._dispatch, kind, key, data, context=contextvars.Context())

    def _sync_client(self) -> Any:
        if self._sync_redis is None:
            import redis

            self._sync_redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        return self._sync_redis


_bus = Bus()


def get_bus() -> Bus:
    return _bus
