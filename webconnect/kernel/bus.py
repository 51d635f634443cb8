"""The one bus between processes: channel messages, document relay and control messages.

Services mode: a process subscribes on Redis only to what it has a use for.
- Keyed kinds (channel messages, document relay; `keyed(kind)`): one topic per
  key, SUBSCRIBEd when the first local user of the key appears
  (`subscribe`/`retain`) and UNSUBSCRIBEd after the last leaves (`unsubscribe`),
  reference-counted; what changes within one loop iteration goes out as one
  write (a subscribe undone in the same iteration sends nothing). Channel
  messages are published by the history's Lua script as "<offset> <frame>".
- Process-wide kinds (every other kind: revocations, policy changes): one topic
  per kind, subscribed at start, the key carried in the message.
So a process never receives messages for a channel it has no socket on, and
Redis holds no pattern subscription (`PUBSUB NUMPAT` is 0).

With REALTIME_REDIS_CLUSTER_URL the keyed topics live on a Redis Cluster as
sharded pub/sub (SSUBSCRIBE/SPUBLISH), hash-tagged with the key so a channel's
topic and its history keys share one slot; the process holds one connection
per master it needs, routed by slot. Process-wide kinds use plain
PUBLISH/SUBSCRIBE, which a cluster broadcasts to every node: that connection
may sit on any live node, so losing one master never silences revocations.

Embedded mode has one process, so a publish is a direct call on its event loop.

One reconnect story for all of it: when a connection breaks, its topics are
"lost" (`on_topics_lost(kind, ...)`: hold live frames) until re-subscribed on
the same Redis or, after a cluster failover, on the new master; then
`on_topics_back(kind, ...)` fills what may have been missed (channel history).
`subscribe` returns only once Redis confirmed the topic (a `subscribe` ack
promises live delivery). The process-wide connection is the bus's readiness
(`wait_ready`) and drives `on_lost`/`on_reconnect` (the document log resync).

Handlers run on the process's event loop, never in a request's thread:
`publish_threadsafe` is how sync code (signal receivers, admin saves) reaches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

Handler = Callable[[str, bytes], Awaitable[None] | None]
ReconnectCallback = Callable[[], Awaitable[None]]
KeysLost = Callable[[list[str]], None]
KeysBack = Callable[[list[str]], Awaitable[None]]

CHANNEL_MESSAGES = "pub"  # kind of the messages the history script publishes

# Kinds with one topic per key (subscribed on demand); declared by the module that owns the kind.
_KEYED: set[str] = {CHANNEL_MESSAGES}

HEALTH_SECONDS = 10.0  # a subscriber connection PINGs this often; silent for 3x that: lost


def keyed(kind: str) -> None:
    """Declare `kind` keyed: one topic per key, subscribed only where a key is in use.

    Call it at import of the module that defines the kind (publishers and
    subscribers must agree on the topic name)."""
    _KEYED.add(kind)


class BusUnavailable(Exception):
    """Redis cannot be reached: nothing published now reaches other processes."""


class _Topic:
    __slots__ = ("confirmed", "count", "event", "gap", "inflight", "key", "kind", "link", "name", "sent")

    def __init__(self, kind: str, key: str, name: str) -> None:
        self.kind, self.key, self.name = kind, key, name
        self.count = 0  # local users (subscribe/retain minus unsubscribe)
        self.sent = False  # the last command sent for it on its link was a subscribe
        self.inflight = 0  # commands sent, not yet answered
        self.confirmed = False  # Redis confirmed the subscription on the live connection
        self.gap = False  # it was live, then its connection broke: messages may be missing
        self.event: asyncio.Event | None = None
        self.link: _Link | None = None

    def confirm(self) -> None:
        self.confirmed = True
        if self.event is not None:
            self.event.set()


class _Link:
    """One subscriber connection: the single Redis, a cluster master (sharded), or the cluster's broadcast one."""

    def __init__(self, bus: Bus, address: str | None, *, sharded: bool, control: bool) -> None:
        self.bus = bus
        self.address = address  # "host:port" of a cluster master; None: REDIS_URL / any cluster node
        self.sharded = sharded
        self.control = control
        self.topics: dict[str, _Topic] = {}
        self.dirty: set[_Topic] = set()
        self.conn: Any = None
        self.ready = False
        self.retired = False
        self._lock = asyncio.Lock()
        self._flush_scheduled = False
        self._regained: list[_Topic] = []
        self._awaiting: set[_Topic] = set()  # subscribed at (re)connect, not confirmed yet
        self.task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())

    @property
    def _sub(self) -> str:
        return "SSUBSCRIBE" if self.sharded else "SUBSCRIBE"

    @property
    def _unsub(self) -> str:
        return "SUNSUBSCRIBE" if self.sharded else "UNSUBSCRIBE"

    def attach(self, topic: _Topic) -> None:
        topic.link = self
        self.topics[topic.name] = topic
        self.changed(topic)

    def changed(self, topic: _Topic) -> None:
        self.dirty.add(topic)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Next iteration: whatever else changes in this one goes in the same write.
            asyncio.get_running_loop().call_soon(self._spawn_flush, context=contextvars.Context())

    def _spawn_flush(self) -> None:
        self._flush_scheduled = False
        self.bus._spawn(self.flush())

    async def flush(self) -> None:
        async with self._lock:
            conn, dirty = self.conn, self.dirty
            if conn is None or not dirty:
                return  # (re)connecting: everything wanted is subscribed when it is back
            self.dirty = set()
            subscribe: list[str] = []
            unsubscribe: list[str] = []
            for topic in dirty:
                want = topic.count > 0
                if want != topic.sent:
                    topic.sent = want
                    topic.inflight += 1
                    if want:
                        subscribe.append(topic.name)
                    else:  # not live from now on: a re-subscribe waits for its own answer
                        unsubscribe.append(topic.name)
                        topic.confirmed = False
                        if topic.event is not None:
                            topic.event.clear()
                elif not want and topic.inflight == 0:
                    self._forget(topic)
            await self._send(conn, subscribe, unsubscribe)

    async def _send(self, conn: Any, subscribe: list[str], unsubscribe: list[str]) -> None:
        commands: list[tuple[str, ...]] = []
        if self.sharded:  # SSUBSCRIBE takes channels of one slot only: one command each
            commands += [(self._sub, name) for name in subscribe]
            commands += [(self._unsub, name) for name in unsubscribe]
        else:
            if subscribe:
                commands.append((self._sub, *subscribe))
            if unsubscribe:
                commands.append((self._unsub, *unsubscribe))
        if commands:
            try:
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
            except Exception as exc:  # the reader sees the broken connection and reconnects
                logger.debug("message bus: subscription write failed (%s)", exc)

    def _forget(self, topic: _Topic) -> None:
        if self.topics.get(topic.name) is topic:
            del self.topics[topic.name]
        if self.bus._topics.get(topic.name) is topic:
            del self.bus._topics[topic.name]
        topic.link = None

    async def _run(self) -> None:
        delay = 0.1
        while not self.retired:
            conn = None
            pinger: asyncio.Task[None] | None = None
            try:
                conn = await self.bus._connect(self.address)
                async with self._lock:
                    self.conn = conn
                    self.dirty.clear()
                    wanted = []
                    for topic in list(self.topics.values()):
                        topic.inflight = 0
                        topic.sent = topic.count > 0
                        if topic.sent:
                            topic.inflight = 1
                            wanted.append(topic.name)
                        else:
                            self._forget(topic)
                    self._awaiting = {self.topics[name] for name in wanted}
                    await self._send(conn, wanted, [])
                pinger = asyncio.get_running_loop().create_task(self._ping(conn))
                if not wanted:
                    self._all_confirmed()
                delay = 0.1
                while True:
                    response = await conn.read_response(timeout=3 * HEALTH_SECONDS)
                    self._handle(response)
                    if self._regained:
                        self._back()
            except asyncio.CancelledError:
                self._close(conn)
                raise
            except Exception as exc:
                self._close(conn)
                if pinger is not None:
                    pinger.cancel()
                self._lost(exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)
                if self.bus.cluster_url:
                    await self.bus._reroute(self)
            finally:
                if pinger is not None:
                    pinger.cancel()

    def _close(self, conn: Any) -> None:
        self.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                self.bus._spawn(conn.disconnect(nowait=True))

    async def _ping(self, conn: Any) -> None:
        while True:
            await asyncio.sleep(HEALTH_SECONDS)
            await conn.send_packed_command(conn.pack_command("PING"), check_health=False)

    def _handle(self, response: Any) -> None:
        if not isinstance(response, list) or not response:
            return
        kind = response[0]
        if kind in (b"message", b"smessage"):
            topic = self.topics.get(response[1].decode())
            if topic is not None:
                self.bus._deliver(topic, response[2])
        elif kind in (b"subscribe", b"ssubscribe", b"unsubscribe", b"sunsubscribe"):
            topic = self.topics.get(response[1].decode())
            if topic is None:
                return
            if topic.inflight == 0:
                if kind == b"sunsubscribe" and topic.sent:
                    # The server dropped it: its slot moved (resharding). Resubscribe where it lives now.
                    raise ConnectionError(f"slot of {topic.name} moved")
                return
            topic.inflight -= 1
            if topic.inflight:
                return  # a later command for it is on its way: its answer decides
            if not self.ready and topic in self._awaiting:
                self._awaiting.discard(topic)
                if not self._awaiting:
                    self._all_confirmed()  # (the caller's _back runs after: readiness first)
            if topic.sent:
                if not topic.confirmed:
                    topic.confirm()
                    if topic.gap:
                        topic.gap = False
                        self._regained.append(topic)
            else:
                topic.confirmed = False
                if topic.count == 0:
                    self._forget(topic)
                else:  # re-wanted while its unsubscribe was on the way
                    self.changed(topic)

    def _all_confirmed(self) -> None:
        self.ready = True
        if self.control:
            self.bus._control_ready()

    def _back(self) -> None:
        regained, self._regained = self._regained, []
        self.bus._keys_back(regained)

    def _lost(self, exc: Exception) -> None:
        self._awaiting = set()
        lost = []
        for topic in self.topics.values():
            topic.inflight = 0
            topic.sent = False
            if topic.confirmed:
                topic.confirmed = False
                if topic.event is not None:
                    topic.event.clear()
                topic.gap = True
                lost.append(topic)
        was_ready, self.ready = self.ready, False
        if was_ready or lost:
            where = self.address or "Redis"
            logger.warning("message bus: subscription to %s lost (%s); reconnecting", where, exc)
        self.bus._keys_lost(lost)
        if self.control and was_ready:
            self.bus._control_lost()


class Bus:
    def __init__(self) -> None:
        self.process_id = secrets.token_hex(8)
        self.redis: Any = None  # async client for channel data: Redis, or RedisCluster
        self.loop: asyncio.AbstractEventLoop | None = None
        self.generation = 0  # how many times the process-wide subscription was (re)established
        self._handlers: dict[str, Handler] = {}
        self._reconnect: list[ReconnectCallback] = []
        self._lost: list[Callable[[], None]] = []
        self._keys_lost_cb: dict[str, list[KeysLost]] = defaultdict(list)
        self._keys_back_cb: dict[str, list[KeysBack]] = defaultdict(list)
        self._ready: asyncio.Event | None = None
        self._sync_redis: Any = None
        self._background: set[asyncio.Task[Any]] = set()
        self._topics: dict[str, _Topic] = {}
        self._control: _Link | None = None
        self._links: dict[str | None, _Link] = {}  # sharded links by master address (single Redis: None)
        self._slots: list[str | None] = []  # cluster: slot -> master "host:port"
        self._nodes: list[str] = []  # cluster: every node seen, to ask for the slot map

    @property
    def distributed(self) -> bool:
        return bool(settings.REDIS_URL or self.cluster_url)

    @property
    def cluster_url(self) -> str:
        return str(getattr(settings, "REALTIME_REDIS_CLUSTER_URL", "") or "")

    @property
    def prefix(self) -> str:
        return str(settings.REALTIME_REDIS_PREFIX)

    def topic(self, kind: str, key: str) -> str:
        # A keyed topic carries its key as the hash tag, as the channel's history keys do
        # (RedisHistory.keys): on a cluster both live on one slot.
        if kind == CHANNEL_MESSAGES:
            return f"{self.prefix}:{{{key}}}:pub"
        if kind in _KEYED:
            return f"{self.prefix}:bus:{kind}:{{{key}}}"
        return f"{self.prefix}:bus:{kind}"

    # --- Registration (from AppConfig.ready() or module import) -------------------------

    def on(self, kind: str, handler: Handler) -> None:
        """Route messages of `kind` to `handler(key, data)` (sync and quick, or a coroutine)."""
        self._handlers[kind] = handler
        if kind not in _KEYED and self.loop is not None and self.distributed:
            self._want_control(kind)

    def on_reconnect(self, callback: ReconnectCallback) -> None:
        """Run after the process-wide subscription is back, to fill what may have been missed."""
        if callback not in self._reconnect:
            self._reconnect.append(callback)

    def on_lost(self, callback: Callable[[], None]) -> None:
        """Run (sync, quick) the moment the process-wide subscription breaks, before anything new arrives."""
        if callback not in self._lost:
            self._lost.append(callback)

    def on_topics_lost(self, kind: str, callback: KeysLost) -> None:
        """Run (sync, quick) with the keys of `kind` whose live subscription just broke."""
        self._keys_lost_cb[kind].append(callback)

    def on_topics_back(self, kind: str, callback: KeysBack) -> None:
        """Run with the keys of `kind` subscribed again after a break (messages may be missing)."""
        self._keys_back_cb[kind].append(callback)

    # --- Start and readiness ----------------------------------------------------------------

    async def start(self, *, wait: bool = True) -> None:
        """Bind to the running loop and (services mode) subscribe; `wait`: until the process-wide topics are live."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop = loop
            self._ready = asyncio.Event()
            self._topics, self._links, self._control = {}, {}, None
            if self.distributed:
                self.redis = self._async_client()
                self._control = _Link(self, None, sharded=False, control=True)
                for kind in self._handlers:
                    if kind not in _KEYED:
                        self._want_control(kind)
            else:
                self._ready.set()
        if wait:
            await self.wait_ready()

    def _async_client(self) -> Any:
        if self.cluster_url:
            from redis.asyncio.cluster import RedisCluster

            client = RedisCluster.from_url(self.cluster_url, socket_connect_timeout=2, socket_timeout=5)
            client.commands_parser = _kept_command_table()
            return client
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=5, health_check_interval=10)

    async def wait_ready(self, within: float | None = None) -> None:
        """Return once this process receives process-wide messages; BusUnavailable after `within` seconds."""
        assert self._ready is not None, "Bus.start() first"
        if self._ready.is_set():
            return
        wait = settings.REALTIME_BUS_READY_TIMEOUT if within is None else within
        try:
            await asyncio.wait_for(self._ready.wait(), wait)
        except TimeoutError:
            raise BusUnavailable("the message bus (Redis) is unavailable") from None

    def _control_ready(self) -> None:
        assert self._ready is not None
        self.generation += 1
        self._ready.set()
        if self.generation > 1:
            logger.info("message bus: Redis subscription is back; filling what may have been missed")
            for callback in list(self._reconnect):
                self._spawn(callback())

    def _control_lost(self) -> None:
        if self._ready is not None:
            self._ready.clear()
        for lost in list(self._lost):
            try:
                lost()
            except Exception:
                logger.exception("message bus: on_lost callback failed")

    def _keys_lost(self, topics: Iterable[_Topic]) -> None:
        for kind, keys in _by_kind(topics).items():
            for callback in self._keys_lost_cb.get(kind, ()):
                try:
                    callback(keys)
                except Exception:
                    logger.exception("message bus: topics-lost callback failed")

    def _keys_back(self, topics: Iterable[_Topic]) -> None:
        for kind, keys in _by_kind(topics).items():
            for callback in self._keys_back_cb.get(kind, ()):
                self._spawn(callback(keys))

    # --- Subscriptions ------------------------------------------------------------------------

    def _want_control(self, kind: str) -> None:
        name = self.topic(kind, "")
        if name not in self._topics and self._control is not None:
            topic = self._topics[name] = _Topic(kind, "", name)
            topic.count = 1  # for the process's lifetime
            self._control.attach(topic)

    def retain(self, kind: str, key: str) -> None:
        """One more local user of `kind`/`key`: subscribed on Redis from the first (does not wait)."""
        if not self.distributed or kind not in _KEYED:
            return
        assert self.loop is not None, "Bus.start() first"
        name = self.topic(kind, key)
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(kind, key, name)
        topic.count += 1
        if topic.count == 1:
            if topic.link is None:
                self._route(topic).attach(topic)
            else:
                topic.link.changed(topic)

    def unsubscribe(self, kind: str, key: str) -> None:
        """One local user fewer (each `subscribe`/`retain`, even a failed one, is matched by one of these)."""
        if not self.distributed or kind not in _KEYED:
            return
        topic = self._topics.get(self.topic(kind, key))
        if topic is None or topic.count == 0:
            return
        topic.count -= 1
        if topic.count == 0 and topic.link is not None:
            topic.link.changed(topic)

    async def subscribe(self, kind: str, key: str, *, within: float | None = None) -> None:
        """`retain`, then return once Redis confirmed the subscription; BusUnavailable after `within` seconds."""
        self.retain(kind, key)
        await self.subscribed(kind, key, within=within)

    async def subscribed(self, kind: str, key: str, *, within: float | None = None) -> None:
        """Return once this process receives `kind`/`key` (retained before); BusUnavailable after a timeout."""
        if not self.distributed:
            return
        if kind not in _KEYED:
            await self.wait_ready(within)
            return
        topic = self._topics.get(self.topic(kind, key))
        if topic is None or topic.count == 0:
            raise BusUnavailable(f"{kind}:{key} is not retained")
        if topic.confirmed:
            return
        if topic.event is None:
            topic.event = asyncio.Event()
        wait = settings.REALTIME_BUS_READY_TIMEOUT if within is None else within
        try:
            await asyncio.wait_for(topic.event.wait(), wait)
        except TimeoutError:
            raise BusUnavailable("the message bus (Redis) is unavailable") from None

    def subscribed_topics(self) -> list[str]:
        """Names of the topics this process wants now (tests, diagnostics)."""
        return sorted(name for name, topic in self._topics.items() if topic.count > 0)

    # --- Connections and (cluster) routing ----------------------------------------------------

    def _route(self, topic: _Topic) -> _Link:
        if not self.cluster_url:
            assert self._control is not None
            return self._control  # one connection carries everything
        address: str | None = None
        if self.cluster_url:
            from redis.crc import key_slot

            if self._slots:
                address = self._slots[key_slot(topic.name.encode())]
            address = address or "?"  # slot map not known yet: the link's first attempt reroutes
        link = self._links.get(address)
        if link is None or link.retired:
            link = self._links[address] = _Link(self, address, sharded=bool(self.cluster_url), control=False)
        return link

    async def _connect(self, address: str | None) -> Any:
        from redis.asyncio.connection import Connection, parse_url

        url = self.cluster_url or settings.REDIS_URL
        options: dict[str, Any] = dict(parse_url(url))
        cls = options.pop("connection_class", Connection)
        options.pop("db", None)  # pub/sub ignores the database number
        candidates: list[str | None] = [address]
        if self.cluster_url:
            if not self._slots:
                await self._refresh_slots()
            if address == "?":
                raise ConnectionError("no slot map yet")
            if address is None:  # the broadcast link: any live node
                candidates = list(self._nodes) or [None]
        last: Exception = ConnectionError("no node")
        for candidate in candidates:
            where = dict(options)
            if candidate is not None:
                host, _, port = candidate.rpartition(":")
                where.update(host=host, port=int(port))
            conn = cls(
                **where,
                socket_connect_timeout=2,
                client_name=f"webconnect-bus-{self.process_id}",
            )
            try:
                await conn.connect()
                return conn
            except Exception as exc:
                last = exc
                with contextlib.suppress(Exception):
                    await conn.disconnect()
        raise last

    async def _refresh_slots(self) -> None:
        """Read the cluster's slot map from the first node that answers."""
        from redis.asyncio.connection import Connection, parse_url

        options: dict[str, Any] = dict(parse_url(self.cluster_url))
        cls = options.pop("connection_class", Connection)
        options.pop("db", None)
        seed = f"{options.get('host', '127.0.0.1')}:{options.get('port', 6379)}"
        for node in [*self._nodes, seed]:
            host, _, port = node.rpartition(":")
            conn = cls(**{**options, "host": host, "port": int(port)}, socket_connect_timeout=1, socket_timeout=2)
            try:
                await conn.connect()
                await conn.send_command("CLUSTER", "SLOTS")
                ranges = await conn.read_response()
            except Exception as exc:
                logger.debug("message bus: %s gave no slot map (%s)", node, exc)
                continue
            finally:
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            slots: list[str | None] = [None] * 16384
            nodes: list[str] = []
            for start, end, master, *replicas in ranges:
                owner = f"{(master[0].decode() or host)}:{master[1]}"
                for slot in range(start, end + 1):
                    slots[slot] = owner
                for node_info in (master, *replicas):
                    name = f"{(node_info[0].decode() or host)}:{node_info[1]}"
                    if name not in nodes:
                        nodes.append(name)
            self._slots, self._nodes = slots, nodes
            return

    async def _reroute(self, link: _Link) -> None:
        """After `link` broke (cluster): move its topics to the masters that own their slots now."""
        with contextlib.suppress(Exception):
            await self._refresh_slots()
        if link.control or not self._slots:
            return
        from redis.crc import key_slot

        for topic in list(link.topics.values()):
            owner = self._slots[key_slot(topic.name.encode())]
            if owner is not None and owner != link.address:
                del link.topics[topic.name]
                link.dirty.discard(topic)
                if topic.count == 0:
                    topic.link = None
                    self._topics.pop(topic.name, None)
                    continue
                target = self._links.get(owner)
                if target is None or target.retired:
                    target = self._links[owner] = _Link(self, owner, sharded=True, control=False)
                target.attach(topic)
        if not link.topics:
            link.retired = True
            if self._links.get(link.address) is link:
                del self._links[link.address]

    # --- Delivery ---------------------------------------------------------------------------

    def _deliver(self, topic: _Topic, data: bytes) -> None:
        try:
            if topic.kind in _KEYED:
                self._dispatch(topic.kind, topic.key, data)
            else:
                key, _, body = data.partition(b"\n")
                self._dispatch(topic.kind, key.decode(), body)
        except Exception:
            logger.exception("message bus: handling a message on %r failed", topic.name[:200])

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

    def _wire(self, kind: str, key: str, data: bytes) -> tuple[str, str, bytes]:
        """(command, topic, payload) of a publish."""
        if kind in _KEYED:
            return ("SPUBLISH" if self.cluster_url else "PUBLISH"), self.topic(kind, key), data
        return "PUBLISH", self.topic(kind, key), key.encode() + b"\n" + data

    async def publish(self, kind: str, key: str, data: bytes) -> None:
        """To every process that wants it (this one included); raises BusUnavailable when Redis is down."""
        if not self.distributed:
            self._dispatch(kind, key, data)
            return
        await self.start(wait=False)
        command, topic, payload = self._wire(kind, key, data)
        try:  # (redis-py's asyncio RedisCluster has no publish/spublish methods; it routes the command)
            await self.redis.execute_command(command, topic, payload)
        except Exception as exc:
            raise BusUnavailable(str(exc)) from exc

    def publish_threadsafe(self, kind: str, key: str, data: bytes) -> None:
        """From sync code in any thread; handlers still run on the server's event loop."""
        if self.distributed:
            command, topic, payload = self._wire(kind, key, data)
            try:
                self._sync_client().execute_command(command, topic, payload)
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
            if self.cluster_url:
                from redis.cluster import RedisCluster

                self._sync_redis = RedisCluster.from_url(self.cluster_url, socket_timeout=5, socket_connect_timeout=5)
            else:
                import redis

                self._sync_redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
        return self._sync_redis


def _by_kind(topics: Iterable[_Topic]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for topic in topics:
        grouped[topic.kind].append(topic.key)
    return grouped


@functools.cache
def _kept_command_table_class() -> type:
    from redis._parsers.commands import AsyncCommandsParser

    class KeptCommandTable(AsyncCommandsParser):
        """Reads COMMAND once, not on every re-initialisation of the cluster client.

        redis-py re-initialises after any connection error and reads COMMAND from the
        default node, which may be the master that just died: the read fails, the client
        closes every node's connections and tries again, so channels on healthy masters
        stalled until the failover was over. The command table never changes.
        """

        async def initialize(self, node: Any = None) -> None:
            if node is not None:
                self.node = node
            if not self.commands:
                await super().initialize()

    return KeptCommandTable


def _kept_command_table() -> Any:
    # Made on first use: redis is imported only when Redis is configured.
    return _kept_command_table_class()()


_bus = Bus()


def get_bus() -> Bus:
    return _bus
