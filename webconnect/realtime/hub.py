"""The process-local hub: channel -> this process's subscribed sockets.

A publish is appended to history (which assigns its offset) and the frame,
encoded once, is handed to every local subscriber's bounded queue; no channel
layer hop per subscriber. Between processes (services mode) the history's Lua
script PUBLISHes the frame on Redis and the kernel's bus
(webconnect.kernel.bus) hands it to this hub in every process. Embedded mode
has one process, so delivery is a direct call. The bus subscribes this process
to a channel only while it has a local subscriber (`add`/`remove`), so it
never receives what none of its sockets wants.

When the bus loses a channel's subscription (a Redis restart, a cluster
master failing over), its local subscribers hold live frames; once it is back
each fills the gap from history, or is told `recovered: false` (Connection.resync).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from django.conf import settings

from webconnect.kernel.bus import CHANNEL_MESSAGES, get_bus
from webconnect.realtime import metrics, protocol
from webconnect.realtime.history import MemoryHistory, Position, Recovery, RedisHistory, stream_key_pattern
from webconnect.realtime.presence import MemoryPresence, RedisPresence, process_ttl
from webconnect.realtime.selectors import NamespaceConfig

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    def deliver(self, channel: str, offset: int, text: str) -> bool | None:
        """Queue one encoded frame; must not block (offset 0: not a history message). True: a frame to a socket."""

    def hold(self, channel: str) -> None:
        """The bus lost its subscription: hold live frames until `resync` (must not block)."""

    async def resync(self, channel: str) -> None:
        """Messages on `channel` may have been missed: recover them."""


@dataclass(frozen=True)
class Published:
    """One message just stored in a channel's history (what a publish listener receives)."""

    channel: str
    namespace: NamespaceConfig
    position: Position
    text: str  # the encoded `message` frame, as subscribers receive it
    sender: dict[str, Any]


PublishListener = Callable[[Published], Awaitable[None]]
_publish_listeners: list[PublishListener] = []


def on_published(listener: PublishListener) -> None:
    """Await `listener` after every stored publish in this process, before the publish is acknowledged.

    The extension point for apps that copy messages elsewhere (the bridges app registers its
    outbox here from AppConfig.ready()). A listener must be quick and handle its own failures:
    the message is stored already, so an error is logged and the publish still succeeds.
    """
    if listener not in _publish_listeners:
        _publish_listeners.append(listener)


class Hub:
    def __init__(self) -> None:
        self.bus = get_bus()
        self.process_id = self.bus.process_id
        self.local: dict[str, set[Subscriber]] = {}
        self._memory_history = MemoryHistory()
        self._memory_presence = MemoryPresence()
        self._redis: Any = None
        self._keep_alive_task: asyncio.Task[None] | None = None
        self.history: MemoryHistory | RedisHistory = self._memory_history
        self.presence: MemoryPresence | RedisPresence = self._memory_presence
        self.bus.on(CHANNEL_MESSAGES, self._on_bus_message)
        self.bus.on_topics_lost(CHANNEL_MESSAGES, self._hold)
        self.bus.on_topics_back(CHANNEL_MESSAGES, self._resync)

    @property
    def distributed(self) -> bool:
        return self.bus.distributed

    async def start(self, *, wait: bool = False) -> None:
        """Bind to the bus; `wait`: until this process receives channel messages (BusUnavailable after a timeout).

        Only a subscribe waits (its ack promises live delivery); a publish or a
        history read during a reconnect just talks to Redis, and what this
        process missed live is filled in when the bus is back.
        """
        await self.bus.start(wait=wait)
        if not self.distributed:
            self.history, self.presence = self._memory_history, self._memory_presence
            return
        if self._redis is not self.bus.redis:
            prefix = settings.REALTIME_REDIS_PREFIX
            self._redis = self.bus.redis
            self.history = RedisHistory(self._redis, prefix, sharded=bool(self.bus.cluster_url))
            self.presence = RedisPresence(self._redis, prefix, self.process_id)
            self._keep_alive_task = asyncio.get_running_loop().create_task(self._keep_alive())

    def _on_bus_message(self, channel: str, data: bytes) -> None:
        offset_text, _, text = data.decode().partition(" ")
        self.deliver_local(channel, int(offset_text), text)

    def _hold(self, channels: list[str]) -> None:
        for channel in channels:
            for subscriber in tuple(self.local.get(channel, ())):
                subscriber.hold(channel)

    async def _resync(self, channels: list[str]) -> None:
        for channel in channels:
            for subscriber in tuple(self.local.get(channel, ())):
                try:
                    await subscriber.resync(channel)
                except Exception:
                    logger.exception("real-time hub: resync of %s failed", channel)

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
        """Deliver `channel` to `subscriber`; this process subscribes on Redis from its first one (see `subscribed`)."""
        subscribers = self.local.setdefault(channel, set())
        if subscriber not in subscribers:
            subscribers.add(subscriber)
            self.bus.retain(CHANNEL_MESSAGES, channel)

    async def subscribed(self, channel: str) -> None:
        """Return once this process receives `channel` live (after `add`); BusUnavailable after a timeout."""
        await self.bus.subscribed(CHANNEL_MESSAGES, channel)

    def remove(self, channel: str, subscriber: Subscriber) -> None:
        subscribers = self.local.get(channel)
        if subscribers is not None and subscriber in subscribers:
            subscribers.discard(subscriber)
            self.bus.unsubscribe(CHANNEL_MESSAGES, channel)
            if not subscribers:
                del self.local[channel]

    def deliver_local(self, channel: str, offset: int, text: str) -> None:
        subscribers = self.local.get(channel)
        if not subscribers:
            return
        # The frame is encoded once (by the publisher or the history script); each socket only
        # queues the same string. Metrics are counted once per fan-out, not per socket.
        queued = 0
        for subscriber in tuple(subscribers):
            if subscriber.deliver(channel, offset, text):
                queued += 1
        metrics.DELIVERIES.inc(len(subscribers))
        metrics.FRAMES_OUT_MESSAGE.inc(queued)

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
        position = Position(offset, epoch)
        for listener in _publish_listeners:
            try:
                await listener(Published(channel, namespace, position, text, sender))
            except Exception:
                logger.exception("real-time hub: publish listener %r failed", listener)
        return position

    async def broadcast_event(self, channel: str, text: str) -> None:
        """A frame outside history (join/leave) to every subscriber in every process."""
        await self.start()
        if isinstance(self.history, RedisHistory):
            await self.history.publish_event(channel, text)
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


def _snapshot(items: Any) -> list[Any]:
    # Read from a request thread while the event loop may change it: retry a torn copy.
    for _attempt in range(10):
        try:
            return list(items)
        except RuntimeError:
            continue
    return []


def live_subscribers() -> list[tuple[str, Subscriber]]:
    """(channel, subscriber) for every live subscription of this process (any thread)."""
    if _hub is None:
        return []
    return [
        (channel, subscriber)
        for channel, subscribers in _snapshot(_hub.local.items())
        for subscriber in _snapshot(subscribers)
    ]


def history_channels(limit: int = 100_000) -> set[str]:
    """Channels that have history: the Redis streams (services mode), or this process's memory."""
    if settings.REDIS_URL:
        import redis

        prefix = settings.REALTIME_REDIS_PREFIX
        client = redis.Redis.from_url(settings.REDIS_URL)
        found: set[str] = set()
        try:
            for key in client.scan_iter(match=stream_key_pattern(prefix), count=1000, _type="STREAM"):
                name = key.decode()[len(prefix) + 2 : -len("}:stream")]
                found.add(name)
                if len(found) >= limit:
                    break
        finally:
            client.close()
        return found
    if _hub is None:
        return set()
    return {name for name in _snapshot(_hub._memory_history.channel_names()) if "." in name}
