"""The /ws/ endpoint: the session kernel's lifecycle around a real-time `Connection`."""

from __future__ import annotations

from django.conf import settings

from webconnect.authorization import aauthorize
from webconnect.identity import RateDecision, Resource
from webconnect.kernel import codes
from webconnect.kernel.sessions import Refusal, SessionConsumer
from webconnect.realtime import protocol, protocol_msgpack
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
            send_msgpack=self.send_bytes_frame if self._msgpack() else None,
        )

    def _subprotocol(self) -> str | None:
        # Batching or MessagePack only when the client asked for it (its first offer we speak);
        # anyone else gets JSON, one envelope per frame.
        return protocol.choose_subprotocol(self.scope.get("subprotocols", ()))

    def _msgpack(self) -> bool:
        return self._subprotocol() == protocol.MSGPACK_SUBPROTOCOL

    async def send_bytes_frame(self, data: bytes) -> None:
        await self.base_send({"type": "websocket.send", "bytes": data})

    async def _send_direct(self, text: str) -> None:
        """One frame past the queue, in the socket's codec."""
        if self._msgpack():
            await self.send_bytes_frame(protocol_msgpack.from_json(text))
        else:
            await self.send(text_data=text)

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
        await self._send_direct(protocol.encode("close", {"code": code, "reason": reason}))

    async def session_refused(self, refusal: RateDecision) -> None:
        error = protocol.ProtocolError(
            "rate_limited", f"too many open connections: {refusal.limit}", retry_after=refusal.retry_after
        )
        await self._send_direct(protocol.encode_error(error))

    async def session_recheck(self) -> None:
        if self.connection is not None:
            await self.connection.recheck()

    async def session_closed(self) -> None:
        if self.connection is not None:
            await self.connection.stop()
