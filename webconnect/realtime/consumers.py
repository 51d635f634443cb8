"""The /ws/ endpoint: the session kernel's lifecycle around a real-time `Connection`."""

from __future__ import annotations

from django.conf import settings

from webconnect.authorization import aauthorize
from webconnect.identity import RateDecision, Resource
from webconnect.kernel import codes
from webconnect.kernel.sessions import Refusal, SessionConsumer
from webconnect.realtime import protocol
from webconnect.realtime.connection import Connection
from webconnect.realtime.selectors import any_anonymous_namespace


class RealtimeConsumer(SessionConsumer):
    endpoint = "ws"
    connection: Connection | None = None

    async def session_authorize(self) -> None:
        anonymous_ok = not self.principal.is_authenticated and await any_anonymous_namespace()
        decision = await aauthorize(
            self.principal, "connect", Resource("Channel", "*", {"anonymous_read": anonymous_ok})
        )
        if not decision:
            raise Refusal(codes.UNAUTHORIZED, decision.reason or "not allowed", before_accept=True)

    async def session_opened(self) -> None:
        self.connection = Connection(
            self.principal,
            self.send_text_frame,
            self.end_session,
            self.session_id,
            batching=self._subprotocol() == protocol.BATCH_SUBPROTOCOL,
        )

    def _subprotocol(self) -> str | None:
        # Batching only when the client asked for it; anyone else gets one envelope per frame.
        if protocol.BATCH_SUBPROTOCOL in self.scope.get("subprotocols", ()):
            return protocol.BATCH_SUBPROTOCOL
        return None

    def idle_timeout(self) -> float | None:
        return float(settings.REALTIME_IDLE_TIMEOUT)

    async def session_receive(self, text: str | None, data: bytes | None) -> None:
        if self.connection is not None:
            await self.connection.receive(text, data)

    async def session_heartbeat(self) -> None:
        if self.connection is not None:
            self.connection.send(protocol.encode("ping", None), "ping")

    async def session_notice(self, code: int, reason: str) -> None:
        # The close reason itself does not reach clients through Daphne, so it also
        # travels in a last `close` frame, written past the (possibly full) queue.
        await self.send(text_data=protocol.encode("close", {"code": code, "reason": reason}))

    async def session_refused(self, refusal: RateDecision) -> None:
        error = protocol.ProtocolError(
            "rate_limited", f"too many open connections: {refusal.limit}", retry_after=refusal.retry_after
        )
        await self.send(text_data=protocol.encode_error(error))

    async def session_recheck(self) -> None:
        if self.connection is not None:
            await self.connection.recheck()

    async def session_closed(self) -> None:
        if self.connection is not None:
            await self.connection.stop()
