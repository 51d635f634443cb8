"""The process-local hub: channel -> this process's subscribed sockets.

A publish is appended to history (which assigns its offset) and the frame,
encoded once, is handed to every local subscriber's bounded queue; no channel
layer hop per subscriber. Between processes (services mode) the history's Lua
script PUBLISHes the frame on Redis and each process's single pattern
subscription hands it to its own local subscribers. Embedded mode has one
process, so delivery is a direct call.

Trade-off of the pattern subscription: every process receives every channel's
messages and drops those it has no subscribers for. That is one Redis
subscription per process (nothing to add or remove per channel, no race
between subscribing and the first message), at the cost of traffic that grows
with the number of processes; per-channel SUBSCRIBE is the next step if that
ever dominates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any, Protocol

from django.conf import settings

from webconnect.realtime import metrics, protocol
from webconnect.realtime.history import MemoryHistory, Position, Recovery, RedisHistory
from webconnect.realtime.presence import MemoryPresence, RedisPresence, process_ttl
from webconnect.realtime.selectors import NamespaceConfig

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    def deliver(self, channel: str, offset: int, text: str) -> None:
        """Queue one encoded frame; must not block (offset 0: not a history message)."""


class Hub:
    def __init__(self) -> None:
        self.process_id = secrets.token_hex(6)
        self.local: dict[str, set[Subscriber]] = {}
        self._memory_history = MemoryHistory()
        self._memory_presence = MemoryPresence()
        self._redis: Any = None
        self._redis_loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self.history: MemoryHistory | RedisHistory = self._memory_history
        self.presence: MemoryPresence | RedisPresence = self._memory_presence

    @property
    def distributed(self) -> bool:
        return bool(settings.REDIS_URL)

    async def start(self) -> None:
        """Connect to Redis once per event loop (services mode); a no-op when embedded."""
        if not self.distributed:
            self.history, self.presence = self._memory_history, self._memory_presence
            return
        loop = asyncio.get_running_loop()
        if self._redis is not None and self._redis_loop is loop:
            # Callers that arrive while the first one subscribes wait for it, so no
            # publish goes out before this process listens for its own messages.
            await self._subscribed.wait()
            return
        import redis.asyncio as aioredis

        prefix = settings.REALTIME_REDIS_PREFIX
        self._subscribed = asyncio.Event()
        self._redis = aioredis.Redis.from_url(settings.REDIS_URL)
        self._redis_loop = loop
        self.history = RedisHistory(self._redis, prefix)
        self.presence = RedisPresence(self._redis, prefix, self.process_id)
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        subscribed = self._subscribed
        try:
            await pubsub.psubscribe(f"{prefix}:pub:*")
        except BaseException:
            # Redis unreachable: the next caller tries again; those waiting are released
            # and fail on their own Redis call (a clear `internal` error, then retry).
            self._redis = None
            subscribed.set()
            raise
        self._tasks = [
            loop.create_task(self._listen(pubsub, len(f"{prefix}:pub:"))),
            loop.create_task(self._keep_alive()),
        ]
        self._subscribed.set()

    async def _listen(self, pubsub: Any, strip: int) -> None:
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
                if message is None or message.get("type") != "pmessage":
                    continue
                channel = message["channel"][strip:].decode()
                offset_text, _, text = message["data"].decode().partition(" ")
                self.deliver_local(channel, int(offset_text), text)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Messages published while Redis is unreachable are lost live; clients
                # recover them from history with `since` (offsets make the gap visible).
                logger.exception("real-time hub: Redis subscription failed; retrying")
                await asyncio.sleep(1)
                with contextlib.suppress(Exception):
                    await pubsub.psubscribe(f"{settings.REALTIME_REDIS_PREFIX}:pub:*")

    async def _keep_alive(self) -> None:
        while True:
            try:
                await self.presence.refresh(set(self.local))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("real-time hub: presence refresh failed")
            await asyncio.sleep(process_ttl() / 3)

    # --- Local subscribers -------------------------------------------------------------

    def add(self, channel: str, subscriber: Subscriber) -> None:
        self.local.setdefault(channel, set()).add(subscriber)

    def remove(self, channel: str, subscriber: Subscriber) -> None:
        subscribers = self.local.get(channel)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self.local[channel]

    def deliver_local(self, channel: str, offset: int, text: str) -> None:
        subscribers = self.local.get(channel)
        if not subscribers:
            return
        for subscriber in tuple(subscribers):
            subscriber.deliver(channel, offset, text)
        metrics.DELIVERIES.inc(len(subscribers))

    # --- Publishing ----------------------------------------------------------------------

    async def publish(
        self, channel: str, namespace: NamespaceConfig, payload: Any, sender: dict[str, Any], encoding: str = "json"
    ) -> Position:
        await self.start()
        prefix, suffix = protocol.message_frame_parts(channel, payload, sender, encoding)
        offset, epoch, text = await self.history.append(
            channel, prefix, suffix, size=namespace.history_size, ttl=namespace.history_ttl
        )
        if not self.distributed:
            self.deliver_local(channel, offset, text)
        return Position(offset, epoch)

    async def broadcast_event(self, channel: str, text: str) -> None:
        """A frame outside history (join/leave) to every subscriber in every process."""
        await self.start()
        if isinstance(self.history, RedisHistory):
            await self._redis.publish(self.history.pubsub_channel(channel), "0 " + text)
        else:
            self.deliver_local(channel, 0, text)

    async def position(self, channel: str, namespace: NamespaceConfig) -> Position:
        await self.start()
        return await self.history.position(channel, ttl=namespace.history_ttl)

    async def recover(self, channel: str, namespace: NamespaceConfig, since: protocol.Since) -> Recovery:
        await self.start()
        return await self.history.since(channel, since, ttl=namespace.history_ttl)

    async def latest(
        self, channel: str, namespace: NamespaceConfig, limit: int
    ) -> tuple[list[tuple[int, str]], Position]:
        await self.start()
        return await self.history.latest(channel, limit, ttl=namespace.history_ttl)


_hub: Hub | None = None


def get_hub() -> Hub:
    global _hub
    if _hub is None:
        _hub = Hub()
    return _hub
