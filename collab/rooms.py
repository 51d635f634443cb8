"""One authoritative Yjs document per open document per process, and its sockets.

The write path of an update, in order:
  1. validated: strict framing, size limits, decodes, applies to `scratch` (a
     replica used only to try updates, so a bad one never touches `doc`);
  2. queued for the room's writer, which commits a batch of updates in one
     transaction (group commit);
  3. only after the commit: applied to `doc`, relayed to this process's other
     sockets and published on the kernel's bus for other processes (relay.py).
So anything a client has seen, from anyone, is in the database. A batch that
cannot be committed closes its senders with UNAVAILABLE (4503): they
reconnect and re-send, so nothing they made is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from channels.db import database_sync_to_async
from django.db import close_old_connections, connection
from pycrdt import Awareness, Doc, XmlElement, XmlFragment, get_update, merge_updates

from collab import protocol, relay, services
from collab.conf import limits
from collab.protocol import ProtocolError
from collab.tasks import compact_document
from webconnect.kernel import codes, startup
from webconnect.kernel.bus import BusUnavailable, get_bus

logger = logging.getLogger(__name__)

# Marks this process's own publications, which it must not re-apply.
PROCESS_ID = get_bus().process_id

# Log writes run on their own threads, not Channels' single thread for
# thread-sensitive work: there they would queue behind every consumer's
# per-frame bookkeeping, and frames would stop piling up into group commits.
_log_writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="collab-log")


def shutdown_log_writers() -> None:
    """Stop the writer threads (their database connections go with them); a new pool starts on demand."""
    global _log_writers
    old, _log_writers = _log_writers, ThreadPoolExecutor(max_workers=4, thread_name_prefix="collab-log")
    old.shutdown(wait=True)
    for log in list(_loop_logs.values()):
        if log is not None:
            log.close()
    _loop_logs.clear()


# On SQLite each event loop commits batches itself (services.LoopLog); None: threads only.
_loop_logs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, services.LoopLog | None] = weakref.WeakKeyDictionary()


def _loop_log() -> services.LoopLog | None:
    loop = asyncio.get_running_loop()
    if loop not in _loop_logs:
        _loop_logs[loop] = services.loop_log()
    return _loop_logs[loop]


# A writer thread keeps its database connection between batches. Django's
# close_old_connections() before each one closed SQLite's connection (CONN_MAX_AGE
# 0: a reconnect per batch) and sent PostgreSQL's health check (a SELECT 1 round
# trip): several times the commit itself. It still runs after errors and when the
# connection sat idle, which is when a stale connection shows.
_IDLE_CHECK_SECONDS = 1.0
_writer_state = threading.local()


def _append(document_id: int, updates: list[tuple[bytes, int | None]], touch: bool) -> int:
    now = time.monotonic()
    checked = now - getattr(_writer_state, "used_at", float("-inf")) > _IDLE_CHECK_SECONDS
    if checked or connection.errors_occurred:
        close_old_connections()  # what Channels would do around a handler: drop broken/expired connections
        checked = True
    _writer_state.used_at = now
    try:
        return services.document_append_updates(document_id=document_id, updates=updates, touch=touch)
    except Exception:
        close_old_connections()  # a broken connection goes here
        if checked or connection.connection is not None:
            raise  # a fresh (or still working) connection failed: the database did
        # The kept connection had gone stale (a database restart): once more on a new one.
        return services.document_append_updates(document_id=document_id, updates=updates, touch=touch)


# Awareness client ids one socket may introduce (a provider uses one).
MAX_CLIENT_IDS_PER_SOCKET = 4
# Another process's claim on a client id lapses when it has not been heard of for
# this long (y-protocols clients renew their state every 15 s, and time out others at 30 s).
REMOTE_AWARENESS_SECONDS = 30.0
_COLOR = re.compile(r"#[0-9a-fA-F]{3,8}")


def _with_user(state: dict[str, Any], user: dict[str, Any]) -> dict[str, Any]:
    """`state` with the server's `user` (name and id of the authenticated user) and a plain colour."""
    claimed = state.get("user")
    color = claimed.get("color") if isinstance(claimed, dict) else None
    server_user = dict(user)
    if isinstance(color, str) and _COLOR.fullmatch(color):
        server_user["color"] = color  # shown as a CSS colour: nothing else gets through
    return {**state, "user": server_user}


# A room whose last commit returned longer ago than this is quiet: it commits on the loop.
QUIET_SECONDS = 0.005
INLINE_MAX_PEERS = 8

# The document row's "last edited" time (and size) moves at most this often per room.
TOUCH_SECONDS = 10.0


class Peer(Protocol):
    user_id: int | None
    can_edit: bool

    async def send_frame(self, frame: bytes) -> None: ...

    async def close_with(self, code: int, reason: str = "") -> None: ...

    async def recheck(self) -> None: ...


@dataclass
class _Pending:
    update: bytes
    peer: Peer | None
    user_id: int | None
    on_committed: Callable[[], Awaitable[None]] | None = None


@dataclass
class Room:
    document_id: int
    doc: Doc[Any] = field(default_factory=Doc)
    scratch: Doc[Any] = field(default_factory=Doc)
    peers: dict[Peer, set[int]] = field(default_factory=dict)  # peer -> awareness client ids it announced
    seq: int = 0  # the highest log id this room has read from the database
    size: int = 0
    closed: bool = False
    multi_process: bool = False

    def __post_init__(self) -> None:
        self.awareness = Awareness(self.doc)
        self.awareness.set_local_state(None)  # the server itself is nobody's presence
        self._pending: list[_Pending] = []
        self._pending_size = 0
        self._writer: asyncio.Task[None] | None = None
        self._resync: asyncio.Task[None] | None = None
        self._touched_at = float("-inf")
        self._committed_at = float("-inf")  # when the last batch's commit returned
        self._inflight: list[_Pending] = []  # the batch being committed
        self._unavailable_peers: set[Peer] = set()  # their updates could not be stored: closing
        self._edit_budgets: dict[object, tuple[float, float]] = {}  # editor -> (bytes left, at)
        self._watch_schema()
        self._owners: dict[int, Peer] = {}  # awareness client id -> the local socket that introduced it
        self._remote_owners: dict[int, tuple[str, float]] = {}  # ... -> (process id, last seen)

    # --- lifecycle ------------------------------------------------------------------

    async def open(self) -> None:
        loaded = await database_sync_to_async(services.document_load)(document_id=self.document_id)
        if loaded.state:
            self.doc.apply_update(loaded.state)
            self.scratch.apply_update(loaded.state)
        self._schema_errors.clear()  # what is stored already is judged by the export, not here
        self.seq = loaded.seq
        self.size = loaded.size
        bus = get_bus()
        await bus.start()
        self.multi_process = bus.distributed
        if self.multi_process:
            try:  # this process hears the document's relay topic while the room is open
                await bus.subscribe(relay.KIND, str(self.document_id))
            except BaseException:
                bus.unsubscribe(relay.KIND, str(self.document_id))
                raise
            self._resync = asyncio.create_task(self._resync_loop())

    async def close(self) -> None:
        if self.multi_process and not self.closed:
            get_bus().unsubscribe(relay.KIND, str(self.document_id))
        self.closed = True
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(BaseException):
                await self._resync

    # --- incoming from a socket ---------------------------------------------------------

    def accept_update(
        self, peer: Peer, update: bytes, on_committed: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Validate and queue an update. False: nothing new in it (already known)."""
        if peer in self._unavailable_peers:
            raise ProtocolError("storage unavailable: reconnect to re-send", protocol.CLOSE_UNAVAILABLE)
        if len(update) > limits().max_update_bytes:
            raise ProtocolError("update too large", protocol.CLOSE_TOO_LARGE)
        if update == protocol.EMPTY_UPDATE:
            return False
        protocol.check_update(update)
        try:
            # Only the part this document lacks (deletions always included): a
            # reconnecting client's full re-send is not stored twice.
            novel = get_update(update, self.scratch.get_state())
        except Exception as exc:
            raise ProtocolError(f"update does not decode: {exc}") from exc
        if novel == protocol.EMPTY_UPDATE:
            return False
        if self.size + self._pending_size + len(update) > limits().max_document_bytes:
            raise ProtocolError("document size limit reached", protocol.CLOSE_TOO_LARGE)
        if not self._spend_edit_bytes(peer, len(update)):
            raise ProtocolError("edit size budget spent: wait a little", protocol.CLOSE_RATE_LIMITED)
        self._schema_errors.clear()
        try:
            self.scratch.apply_update(update)
        except Exception as exc:
            self._rebuild_scratch()
            raise ProtocolError(f"update does not apply: {exc}") from exc
        if self._schema_errors:
            problem = self._schema_errors[0]
            self._rebuild_scratch()
            raise ProtocolError(f"update conflicts with the document's schema: {problem}")
        if protocol.has_missing_dependencies(update, self.scratch.get_state()):
            # Never stored as a dangling row: refused, and the replica loses what Yrs kept
            # pending. A client sends one when it edits while reconnecting to another
            # process (after a failover, before the sync): the close is retryable, and the
            # reconnect's sync re-sends the whole difference, so nothing is lost.
            self._rebuild_scratch()
            raise ProtocolError(
                "update depends on changes this document does not have: reconnect to sync",
                protocol.CLOSE_RESYNC,
            )
        self._pending.append(_Pending(update, peer, peer.user_id, on_committed))
        self._pending_size += len(update)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop())
        return True

    def _spend_edit_bytes(self, peer: Peer, size: int) -> bool:
        """Take `size` bytes from the sender's budget on this document (a token bucket per editor)."""
        budget = float(limits().edit_bytes_per_minute)
        key: object = peer.user_id if peer.user_id is not None else peer
        now = asyncio.get_running_loop().time()
        tokens, since = self._edit_budgets.get(key, (budget, now))
        tokens = min(budget, tokens + (now - since) * budget / 60.0)
        if size > tokens:
            self._edit_budgets[key] = (tokens, now)
            return False
        self._edit_budgets[key] = (tokens - size, now)
        return True

    def _rebuild_scratch(self) -> None:
        """A fresh replica: the document plus the updates accepted but not yet applied to it."""
        self.scratch = Doc()
        self.scratch.apply_update(self.doc.get_update())
        for item in [*self._inflight, *self._pending]:
            self.scratch.apply_update(item.update)
        self._watch_schema()

    def _watch_schema(self) -> None:
        """Note what breaks the editor's schema in `scratch`: the root `default` is Tiptap's
        XmlFragment, whose children are elements (ProseMirror's block nodes) and which has no
        map entries. Yrs gives a root no type of its own (a Text, Map or Array written under
        the same name would merge into it and empty the exports), so the observer judges what
        an update inserts at the root, at the cost of that change only."""
        self._schema_errors: list[str] = []
        fragment = self.scratch.get(services.FRAGMENT, type=XmlFragment)
        self._schema_subscription = fragment.observe(self._check_root_event)

    def _check_root_event(self, event: Any) -> None:
        if event.keys:
            self._schema_errors.append(f"map entries on the root {services.FRAGMENT!r}")
        for change in event.delta:
            inserted = change.get("insert")
            if inserted is None:
                continue
            for value in inserted if isinstance(inserted, list) else [inserted]:
                if not isinstance(value, XmlElement):
                    self._schema_errors.append(f"{type(value).__name__} content in the root {services.FRAGMENT!r}")

    async def _write_loop(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: limits().group_commit_max],
                self._pending[limits().group_commit_max :],
            )
            batch_size = sum(len(item.update) for item in batch)
            self._inflight = batch
            try:
                loop = asyncio.get_running_loop()
                touch = loop.time() - self._touched_at > TOUCH_SECONDS
                rows = [(item.update, item.user_id) for item in batch]
                # A quiet room commits on the loop (SQLite): no thread hop, the lowest latency. A
                # busy one hands the batch to a thread: while it commits, the loop reads what
                # arrives next, and that becomes the next batch (on the loop, nothing would).
                # A large room is busy with fan-out: there a merged batch saves more than a hop costs.
                quiet = loop.time() - self._committed_at > QUIET_SECONDS and len(self.peers) <= INLINE_MAX_PEERS
                inline = _loop_log() if quiet else None
                if inline is None or not inline.append(self.document_id, rows, touch):
                    await loop.run_in_executor(_log_writers, _append, self.document_id, rows, touch)
                self._committed_at = loop.time()
                if touch:
                    self._touched_at = loop.time()
            except Exception:
                logger.exception("could not store %d updates of document %s", len(batch), self.document_id)
                # Not stored, so never shown to anyone: drop them from the replica
                # and disconnect their senders at once with a retryable code; their
                # next sync re-sends them. Their later queued updates build on the
                # dropped ones, so they go too, and anything more they send before the
                # close lands is refused the same way (not as a dangling update).
                failed = {item.peer for item in batch if item.peer is not None}
                self._unavailable_peers.update(failed)
                later = [item for item in self._pending if item.peer in failed]
                self._pending = [item for item in self._pending if item.peer not in failed]
                self._pending_size -= batch_size + sum(len(item.update) for item in later)
                self._inflight = []
                self._rebuild_scratch()
                for peer in failed:
                    with contextlib.suppress(Exception):
                        await peer.close_with(codes.UNAVAILABLE, "storage unavailable: reconnect to re-send")
                continue
            self._pending_size -= batch_size
            self.size += batch_size
            self._inflight = []  # (a rebuild meanwhile re-applied some of them: harmless)
            await self._deliver(batch)

    async def _deliver(self, batch: list[_Pending]) -> None:
        """A committed batch: into `doc`, then out to every socket here, then to other processes.

        One frame per socket per batch (a merged update is still one standard
        y-websocket update): when the loop falls behind, batches grow and the
        frames per edit shrink, instead of every edit costing a frame per socket.
        """
        updates = [item.update for item in batch]
        merged = updates[0] if len(updates) == 1 else merge_updates(*updates)
        self.doc.apply_update(merged)
        frame = protocol.sync_update(merged)
        # A sender gets what the others sent in this batch, never its own update back.
        senders: dict[Peer, bytes | None] = {item.peer: None for item in batch if item.peer is not None}
        for sender in senders:
            others = [item.update for item in batch if item.peer is not sender]
            if others:
                senders[sender] = protocol.sync_update(others[0] if len(others) == 1 else merge_updates(*others))
        for peer in list(self.peers):
            own = senders.get(peer, frame)
            if own is not None:
                try:
                    await peer.send_frame(own)
                except Exception:  # a socket closing mid-send; its disconnect cleans up
                    logger.debug("send to a closing socket failed", exc_info=True)
        for item in batch:
            if item.on_committed is not None:
                with contextlib.suppress(Exception):
                    await item.on_committed()
        if self.multi_process:
            await self._publish(relay.UPDATE, merged)

    async def flush(self) -> None:
        """Wait until every queued update is committed (tests, shutdown)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    # --- awareness (presence): each client id belongs to the socket that introduced it ----------

    def _owner(self, client_id: int) -> Peer | str | None:
        """The local socket, or the process id of another process, that owns `client_id`."""
        owner = self._owners.get(client_id)
        if owner is not None:
            return owner
        remote = self._remote_owners.get(client_id)
        if remote is not None:
            process, seen_at = remote
            if asyncio.get_running_loop().time() - seen_at < REMOTE_AWARENESS_SECONDS:
                return process
            del self._remote_owners[client_id]
        return None

    def accept_awareness(self, peer: Peer, payload: bytes, user: dict[str, Any]) -> bytes | None:
        """Apply what `peer` may say in an awareness update; the update to relay (None: nothing).

        First come: a client id is owned by the socket that introduced it (here or in
        another process); entries about someone else's client id are dropped. The
        `user` field is the server's (the authenticated user), a valid colour is kept.
        """
        announced = self.peers.get(peer)
        if announced is None:
            return None
        kept = []
        for entry in protocol.awareness_entries(payload):
            if entry.client_id == self.awareness.client_id:
                continue  # the server's own id
            owner = self._owner(entry.client_id)
            if owner is not None and owner is not peer:
                continue  # someone else's presence
            if entry.state is None:
                if owner is peer:
                    kept.append(entry)
                continue
            if owner is None:
                if len(announced) >= MAX_CLIENT_IDS_PER_SOCKET:
                    continue
                announced.add(entry.client_id)
                self._owners[entry.client_id] = peer
            kept.append(protocol.AwarenessEntry(entry.client_id, entry.clock, _with_user(entry.state, user)))
        if not kept:
            return None
        sanitized = protocol.encode_awareness_entries(kept)
        self.awareness.apply_awareness_update(sanitized, origin=peer)
        return sanitized

    async def relay_awareness(self, peer: Peer, payload: bytes) -> None:
        await self.broadcast(protocol.awareness(payload), exclude=peer)
        if self.multi_process:
            await self._publish(relay.AWARENESS, payload)

    def awareness_frame(self) -> bytes | None:
        client_ids = list(self.awareness.states)
        if not client_ids:
            return None
        return protocol.awareness(self.awareness.encode_awareness_update(client_ids))

    async def remove_peer(self, peer: Peer) -> None:
        self._unavailable_peers.discard(peer)
        client_ids = sorted(self.peers.pop(peer, set()))
        for client_id in client_ids:
            if self._owners.get(client_id) is peer:
                del self._owners[client_id]
        if client_ids:
            self.awareness.remove_awareness_states(client_ids, origin=peer)
            payload = self.awareness.encode_awareness_update(client_ids)
            await self.relay_awareness(peer, payload)

    def _accept_remote_awareness(self, origin: str, payload: bytes) -> bytes | None:
        """Another process's (already checked) awareness: note who owns what, drop clashes with ours."""
        try:
            entries = protocol.awareness_entries(payload)
        except ProtocolError:
            logger.warning("document %s: undecodable awareness from process %s", self.document_id, origin)
            return None
        now = asyncio.get_running_loop().time()
        kept = []
        for entry in entries:
            if entry.client_id in self._owners:
                continue  # both processes saw a first claim at once: ours stays ours
            if entry.state is None:
                self._remote_owners.pop(entry.client_id, None)
            else:
                self._remote_owners[entry.client_id] = (origin, now)
            kept.append(entry)
        if not kept:
            return None
        filtered = payload if len(kept) == len(entries) else protocol.encode_awareness_entries(kept)
        self.awareness.apply_awareness_update(filtered, origin="remote")
        return filtered

    # --- fan-out ----------------------------------------------------------------------------

    async def broadcast(self, frame: bytes, exclude: Peer | None = None) -> None:
        for peer in list(self.peers):
            if peer is not exclude:
                try:
                    await peer.send_frame(frame)
                except Exception:  # a socket closing mid-send; its disconnect cleans up
                    logger.debug("send to a closing socket failed", exc_info=True)

    async def _publish(self, kind: int, payload: bytes) -> None:
        try:
            await get_bus().publish(relay.KIND, str(self.document_id), relay.encode(kind, PROCESS_ID, payload))
        except BusUnavailable:  # other processes catch up from the log (see _resync_loop)
            logger.warning("document %s: relay to other processes failed (bus unavailable)", self.document_id)

    async def handle_relay(self, message: relay.RelayMessage) -> None:
        if message.kind == relay.UPDATE:
            await self.apply_external([message.payload])
        elif message.kind == relay.AWARENESS:
            payload = self._accept_remote_awareness(message.origin, message.payload)
            if payload is not None:
                await self.broadcast(protocol.awareness(payload))
        elif message.kind == relay.RECHECK:
            for peer in list(self.peers):
                await peer.recheck()

    async def apply_external(self, updates: list[bytes]) -> None:
        """Updates already stored by someone else (another process, a restore): apply and relay the news."""
        before = self.doc.get_state()
        for update in updates:
            try:
                self.doc.apply_update(update)
                self.scratch.apply_update(update)
            except Exception:
                logger.exception("stored update for document %s does not apply", self.document_id)
        diff = self.doc.get_update(before)
        if diff != protocol.EMPTY_UPDATE:
            await self.broadcast(protocol.sync_update(diff))

    async def _resync_loop(self) -> None:
        # Pub/sub may lose messages (a Redis reconnect): read the log now and
        # then so every process converges on what is stored.
        interval = limits().resync_seconds
        while True:
            await asyncio.sleep(interval)
            await self.resync()

    async def resync(self) -> None:
        """Apply what others stored since this room last read the log."""
        try:
            parts, seq = await database_sync_to_async(services.document_updates_since)(
                document_id=self.document_id, seq=max(0, self.seq - limits().resync_overlap)
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("resync of document %s failed", self.document_id)
            return
        self.seq = max(self.seq, seq)
        if parts:
            await self.apply_external(parts)


# --- The registry: one room per document per event loop ----------------------------------------


class _Registry:
    def __init__(self) -> None:
        self.rooms: dict[int, Room] = {}
        self.locks: dict[int, asyncio.Lock] = {}

    def lock(self, document_id: int) -> asyncio.Lock:
        return self.locks.setdefault(document_id, asyncio.Lock())


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Registry] = weakref.WeakKeyDictionary()


def _registry() -> _Registry:
    loop = asyncio.get_running_loop()
    registry = _registries.get(loop)
    if registry is None:
        registry = _registries[loop] = _Registry()
    return registry


def open_rooms() -> list[Room]:
    return list(_registry().rooms.values())


async def join(document_id: int, peer: Peer) -> Room:
    registry = _registry()
    async with registry.lock(document_id):
        room = registry.rooms.get(document_id)
        if room is None or room.closed:
            room = Room(document_id)
            await room.open()
            registry.rooms[document_id] = room
        room.peers.setdefault(peer, set())
        return room


async def leave(room: Room, peer: Peer) -> None:
    await room.remove_peer(peer)
    registry = _registry()
    async with registry.lock(room.document_id):
        if room.peers or room.closed:
            return
        registry.rooms.pop(room.document_id, None)
        await room.close()
    await _schedule_compaction(room.document_id)


async def _schedule_compaction(document_id: int) -> None:
    try:
        await database_sync_to_async(compact_document.delay)(document_id)
    except Exception:  # the periodic compaction picks it up later
        logger.exception("could not schedule compaction of document %s", document_id)


async def _on_relay(key: str, data: bytes) -> None:
    """A document message from the bus, on this loop: the open room (if any) applies it."""
    message = relay.decode(data)
    if message.origin == PROCESS_ID:
        return
    room = _registry().rooms.get(int(key))
    if room is not None and not room.closed:
        await room.handle_relay(message)


async def _resync_open_rooms() -> None:
    for room in open_rooms():
        await room.resync()


async def flush_open_rooms() -> None:
    """Shutdown: commit every update already accepted."""
    await asyncio.gather(*(room.flush() for room in open_rooms()), return_exceptions=True)


get_bus().on(relay.KIND, _on_relay)
get_bus().on_reconnect(_resync_open_rooms)
startup.on_shutdown("collab-flush", flush_open_rooms, startup.FLUSH)
startup.on_shutdown("collab-flush-again", flush_open_rooms, startup.FLUSH_AGAIN)
