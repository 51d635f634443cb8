"""`/ws/docs/<id>`: the y-websocket protocol on one shared document per process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from collab import protocol, rooms, selectors
from collab.protocol import ProtocolError
from webconnect.authorization import Principal, Resource, aauthorize, acheck_rate
from webconnect.handshake import ConnectionAuth

logger = logging.getLogger(__name__)

# A client's first sync step 2 (its offline edits) is committed before the
# server answers the client's step 1, so the provider's "synced" means "stored".
# If the client never sends one, answer anyway after this long.
PEER_STEP2_WAIT_SECONDS = 3.0


class DocumentConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    room: rooms.Room | None = None
    can_edit = False
    user_id: int | None = None

    async def connect(self) -> None:
        self.document_id = int(self.scope["url_route"]["kwargs"]["document_id"])
        user = self.scope.get("user")
        auth = self.scope.get("auth") or ConnectionAuth(method="anonymous")
        self.principal = Principal(user, auth)
        self.user_id = getattr(user, "pk", None) if user is not None and user.is_authenticated else None
        self.display_name = user.get_username() if self.user_id else "anonymous"
        self._closing = False
        self._peer_step2_done = False
        self._deferred_step1: bytes | None = None
        self._deferred_task: asyncio.Task[None] | None = None
        can_read, can_edit, reason = await self._rights()
        await self.accept()
        if not can_read:
            await self._deny(reason)
            return
        self.can_edit = can_edit
        # A read-only client's step 2 is dropped anyway: nothing to wait for.
        self._peer_step2_done = not can_edit
        self.room = await rooms.join(self.document_id, self)
        await self.send(bytes_data=protocol.sync_step1(self.room.doc.get_state()))
        frame = self.room.awareness_frame()
        if frame is not None:
            await self.send(bytes_data=frame)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        if self._deferred_task is not None:
            self._deferred_task.cancel()
        if self.room is not None:
            room, self.room = self.room, None
            await rooms.leave(room, self)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Frames never touch the ORM here (the room's writer threads manage their own
        # connections), so skip Channels' per-message close_old_connections thread hop.
        if message.get("type") == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.room is None or self._closing:
            return
        if bytes_data is None:
            await self.close_with(protocol.CLOSE_INVALID)
            return
        try:
            await self._handle(protocol.parse(bytes_data))
        except ProtocolError as exc:
            logger.info("document %s: refused frame from %s: %s", self.document_id, self.display_name, exc)
            await self.close_with(exc.close_code)

    async def _handle(self, message: protocol.Message) -> None:
        room = self.room
        assert room is not None
        if isinstance(message, protocol.SyncStep1):
            if self._peer_step2_done:
                await self._answer_step1(message.state_vector)
            else:
                self._deferred_step1 = message.state_vector
                self._deferred_task = asyncio.create_task(self._answer_step1_later())
        elif isinstance(message, protocol.SyncStep2 | protocol.SyncUpdate):
            first_step2 = isinstance(message, protocol.SyncStep2) and not self._peer_step2_done
            if not self.can_edit:
                return  # read-only: dropped, never stored or relayed
            if not await self._rate_allows():
                raise ProtocolError("update rate limit", protocol.CLOSE_RATE_LIMITED)
            queued = room.accept_update(self, message.update, self._step2_committed if first_step2 else None)
            if first_step2 and not queued:
                await self._step2_committed()
        elif isinstance(message, protocol.AwarenessUpdate):
            room.accept_awareness(self, message.payload)
            await room.relay_awareness(self, message.payload)
        elif isinstance(message, protocol.QueryAwareness):
            frame = room.awareness_frame()
            if frame is not None:
                await self.send(bytes_data=frame)
        # Auth messages from a client mean nothing to the server.

    async def _answer_step1(self, state_vector: bytes) -> None:
        assert self.room is not None
        try:
            update = self.room.doc.get_update(state_vector)
        except Exception as exc:
            raise ProtocolError(f"bad state vector: {exc}") from exc
        await self.send(bytes_data=protocol.sync_step2(update))

    async def _step2_committed(self) -> None:
        self._peer_step2_done = True
        if self._deferred_step1 is not None and self.room is not None and not self._closing:
            state_vector, self._deferred_step1 = self._deferred_step1, None
            if self._deferred_task is not None:
                self._deferred_task.cancel()
            with contextlib.suppress(ProtocolError):
                await self._answer_step1(state_vector)

    async def _answer_step1_later(self) -> None:
        await asyncio.sleep(PEER_STEP2_WAIT_SECONDS)
        if self._deferred_step1 is not None and self.room is not None and not self._closing:
            state_vector, self._deferred_step1 = self._deferred_step1, None
            self._peer_step2_done = True
            try:
                await self._answer_step1(state_vector)
            except ProtocolError:
                await self.close_with(protocol.CLOSE_INVALID)

    # --- rights ------------------------------------------------------------------------------

    async def _rights(self) -> tuple[bool, bool, str]:
        resource = await database_sync_to_async(selectors.document_resource_by_id)(self.document_id)
        if resource is None:
            return False, False, "document not found"
        self._resource = resource
        read = await aauthorize(self.principal, "read", resource)
        if not read:
            return False, False, read.reason or "permission denied"
        edit = await aauthorize(self.principal, "edit", resource)
        return True, bool(edit), ""

    async def _rate_allows(self) -> bool:
        decision = await acheck_rate(self.principal, "edit", Resource("Document", str(self.document_id)))
        return decision.allowed

    async def recheck(self) -> None:
        """Rights changed somewhere: apply them to this open socket."""
        if self._closing:
            return
        can_read, can_edit, reason = await self._rights()
        if not can_read:
            await self._deny(reason)
        elif can_edit != self.can_edit:
            # The page switches its editor mode when it reconnects.
            self.can_edit = can_edit
            await self.close_with(protocol.CLOSE_PERMISSIONS_CHANGED)

    async def _deny(self, reason: str) -> None:
        await self.send(bytes_data=protocol.permission_denied(reason))
        await self.close_with(protocol.CLOSE_FORBIDDEN)

    # --- rooms.Peer -----------------------------------------------------------------------------

    async def send_frame(self, frame: bytes) -> None:
        if not self._closing:
            await self.send(bytes_data=frame)

    async def close_with(self, code: int) -> None:
        if self._closing:
            return
        self._closing = True
        await self.close(code=code)
        # Leave the room now: the disconnect event may come late, and nothing
        # more must reach or come from this socket.
        if self.room is not None:
            room, self.room = self.room, None
            await rooms.leave(room, self)

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: Any) -> bool:
        return self is other
