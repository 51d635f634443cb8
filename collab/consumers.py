"""`/ws/docs/<id>`: the session kernel's lifecycle around the y-websocket sync (collab/sync.py)."""

from __future__ import annotations

from collab import protocol
from collab.sync import DocumentSync, Rights, document_rights
from webconnect.kernel import codes
from webconnect.kernel.sessions import Refusal, SessionConsumer


class DocumentConsumer(SessionConsumer):
    endpoint = "docs"
    sync: DocumentSync | None = None

    async def session_authorize(self) -> None:
        self.document_id = int(self.scope["url_route"]["kwargs"]["document_id"])
        self.rights: Rights = await document_rights(self.principal, self.document_id)
        if not self.rights.read:
            raise Refusal(codes.FORBIDDEN, self.rights.reason)

    async def session_opened(self) -> None:
        self.sync = DocumentSync(
            self.document_id,
            self.principal,
            self.rights.edit,
            send=self._send_frame,
            close=self.end_session,
            recheck=self.recheck,
        )
        await self.sync.start()

    async def _send_frame(self, frame: bytes) -> None:
        await self.send(bytes_data=frame)

    async def session_receive(self, text: str | None, data: bytes | None) -> None:
        if data is None or self.sync is None:
            raise Refusal(codes.INVALID, "y-websocket frames are binary")
        try:
            await self.sync.receive(data)
        except protocol.ProtocolError as exc:
            raise Refusal(exc.close_code, str(exc)) from exc

    async def session_notice(self, code: int, reason: str) -> None:
        if code in (codes.FORBIDDEN, codes.REVOKED):
            await self.send(bytes_data=protocol.permission_denied(reason))

    async def session_recheck(self) -> None:
        rights = await document_rights(self.principal, self.document_id)
        if not rights.read:
            raise Refusal(codes.FORBIDDEN, rights.reason)
        if self.sync is not None and rights.edit != self.sync.can_edit:
            # The page switches its editor mode when it reconnects.
            raise Refusal(codes.PERMISSIONS_CHANGED, "your rights on this document changed")

    async def session_closed(self) -> None:
        if self.sync is not None:
            await self.sync.stop()
