"""The y-websocket sync state machine of one document socket.

The consumer (collab/consumers.py) only routes frames here; this module
speaks the protocol (collab/protocol.py) against the room's shared document
(collab/rooms.py): answer the client's step 1, take its step 2 and updates
(editors only, rate-limited), check and relay awareness (rooms.py owns
who may speak for which client id), answer awareness queries.

A client's first sync step 2 (its offline edits) is committed before the
server answers the client's step 1, so the provider's "synced" means
"stored". If the client never sends one, answer anyway after
PEER_STEP2_WAIT_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async

from collab import protocol, rooms, selectors
from collab.protocol import ProtocolError
from webconnect.authorization import aauthorize, acheck_rate
from webconnect.identity import Principal, Resource

PEER_STEP2_WAIT_SECONDS = 3.0
EARLY_UPDATES_MAX = 500

SendFrame = Callable[[bytes], Awaitable[None]]
CloseWith = Callable[[int, str], Awaitable[None]]
Recheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Rights:
    read: bool
    edit: bool
    reason: str = ""


async def document_rights(principal: Principal, document_id: int) -> Rights:
    resource = await database_sync_to_async(selectors.document_resource_by_id)(document_id)
    if resource is None:
        return Rights(False, False, "document not found")
    read = await aauthorize(principal, "read", resource)
    if not read:
        return Rights(False, False, read.reason or "permission denied")
    edit = await aauthorize(principal, "edit", resource)
    return Rights(True, bool(edit))


class DocumentSync:
    """One socket's side of a room; the room sees it as a `rooms.Peer`."""

    def __init__(
        self,
        document_id: int,
        principal: Principal,
        can_edit: bool,
        *,
        send: SendFrame,
        close: CloseWith,
        recheck: Recheck,
    ) -> None:
        self.document_id = document_id
        self.principal = principal
        self.user_id = principal.user_id
        self.can_edit = can_edit
        self._send = send
        self._close = close
        self._recheck = recheck
        self.room: rooms.Room | None = None
        self.closing = False
        # A read-only client's step 2 is dropped anyway: nothing to wait for.
        self._peer_step2_done = not can_edit
        self._deferred_step1: bytes | None = None
        self._deferred_task: asyncio.Task[None] | None = None
        self._step2_seen = False  # the client's first sync step 2 arrived
        self._early: list[bytes] = []  # its updates sent before that step 2
        user = principal.user if principal.is_authenticated else None
        # What others see as this socket's `user` in awareness, whatever the client claims.
        self.awareness_user: dict[str, Any] = (
            {"name": user.get_username(), "id": user.pk} if user is not None else {"name": "anonymous", "id": None}
        )

    async def start(self) -> None:
        self.room = await rooms.join(self.document_id, self)
        await self._send(protocol.sync_step1(self.room.doc.get_state()))
        frame = self.room.awareness_frame()
        if frame is not None:
            await self._send(frame)

    async def stop(self) -> None:
        """Leave the room (idempotent)."""
        self.closing = True
        if self._deferred_task is not None:
            self._deferred_task.cancel()
        if self.room is not None:
            room, self.room = self.room, None
            await rooms.leave(room, self)

    async def receive(self, frame: bytes) -> None:
        """One binary frame; raises ProtocolError (with its close code) when refused."""
        if self.room is None or self.closing:
            return
        message = protocol.parse(frame)
        room = self.room
        if isinstance(message, protocol.SyncStep1):
            if self._peer_step2_done:
                await self._answer_step1(message.state_vector)
            else:
                self._deferred_step1 = message.state_vector
                self._deferred_task = asyncio.create_task(self._answer_step1_later())
        elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
            if not self.can_edit:
                return  # read-only: dropped, never stored or relayed
            if isinstance(message, protocol.SyncUpdate) and not self._step2_seen:
                # Typed while (re)connecting, before the client's own step 2: it may build on
                # edits that step 2 brings (after a failover), so it waits for it, bounded.
                if len(self._early) >= EARLY_UPDATES_MAX:
                    raise ProtocolError("too many updates before the sync", protocol.CLOSE_RESYNC)
                self._early.append(message.update)
                return
            first_step2 = isinstance(message, protocol.SyncStep2) and not self._step2_seen
            if first_step2:
                self._step2_seen = True
            await self._accept(message.update, self._step2_committed if first_step2 else None)
            if first_step2:
                await self._accept_early()
        elif isinstance(message, protocol.AwarenessUpdate):
            # Viewers too: presence is not an edit. Only their own client ids, under their own name.
            accepted = room.accept_awareness(self, message.payload, self.awareness_user)
            if accepted is not None:
                await room.relay_awareness(self, accepted)
        elif isinstance(message, protocol.QueryAwareness):
            answer = room.awareness_frame()
            if answer is not None:
                await self._send(answer)
        # Auth messages from a client mean nothing to the server.

    async def _accept(self, update: bytes, on_committed: Callable[[], Awaitable[None]] | None) -> None:
        assert self.room is not None
        rate = await acheck_rate(self.principal, "edit", Resource("Document", str(self.document_id)))
        if not rate.allowed:
            raise ProtocolError("update rate limit", protocol.CLOSE_RATE_LIMITED)
        queued = self.room.accept_update(self, update, on_committed)
        if on_committed is not None and not queued:
            await on_committed()

    async def _accept_early(self) -> None:
        early, self._early = self._early, []
        for update in early:
            await self._accept(update, None)

    async def _answer_step1(self, state_vector: bytes) -> None:
        assert self.room is not None
        try:
            update = self.room.doc.get_update(state_vector)
        except Exception as exc:
            raise ProtocolError(f"bad state vector: {exc}") from exc
        await self._send(protocol.sync_step2(update))

    async def _step2_committed(self) -> None:
        self._peer_step2_done = True
        if self._deferred_step1 is not None and self.room is not None and not self.closing:
            state_vector, self._deferred_step1 = self._deferred_step1, None
            if self._deferred_task is not None:
                self._deferred_task.cancel()
            with contextlib.suppress(ProtocolError):
                await self._answer_step1(state_vector)

    async def _answer_step1_later(self) -> None:
        await asyncio.sleep(PEER_STEP2_WAIT_SECONDS)
        if self._deferred_step1 is not None and self.room is not None and not self.closing:
            state_vector, self._deferred_step1 = self._deferred_step1, None
            self._peer_step2_done = True
            try:
                await self._answer_step1(state_vector)
                if not self._step2_seen:  # it never sent one: take what it sent meanwhile
                    self._step2_seen = True
                    await self._accept_early()
            except ProtocolError as exc:
                await self.close_with(exc.close_code, str(exc))

    # --- rooms.Peer ---------------------------------------------------------------------------

    async def send_frame(self, frame: bytes) -> None:
        if not self.closing:
            await self._send(frame)

    async def close_with(self, code: int, reason: str = "") -> None:
        await self._close(code, reason or "closed by the server")

    async def recheck(self) -> None:
        await self._recheck()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other
