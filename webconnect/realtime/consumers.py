"""The /ws/ endpoint: a thin consumer that hands frames to its `Connection`."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from webconnect.authorization import Principal, Resource, aauthorize, connection_limiter
from webconnect.handshake import ConnectionAuth
from webconnect.realtime import protocol
from webconnect.realtime.connection import Connection
from webconnect.realtime.selectors import any_anonymous_namespace


def user_group(user_id: Any) -> str:
    return f"realtime-user-{user_id}"


def token_group(token_id: Any) -> str:
    return f"realtime-token-{token_id}"


class RealtimeConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    connection: Connection | None = None
    control_groups: list[str]

    async def connect(self) -> None:
        auth: ConnectionAuth = self.scope["auth"]
        principal = Principal(self.scope["user"], auth)
        anonymous_ok = not principal.is_authenticated and await any_anonymous_namespace()
        decision = await aauthorize(principal, "connect", Resource("Channel", "*", {"anonymous_read": anonymous_ok}))
        if not decision:
            await self.close(code=protocol.CLOSE_UNAUTHORIZED)
            return
        # Rare control messages (sign-out, token revoked) reach every process through
        # the channel layer; channel messages never do (see hub.py).
        self.control_groups = []
        if principal.is_authenticated:
            self.control_groups.append(user_group(principal.user.pk))
        if principal.auth.token_id is not None:
            self.control_groups.append(token_group(principal.auth.token_id))
        for group in self.control_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        self.connection = Connection(principal, self._send_text, self._close)
        admitted = await connection_limiter().admit(principal, self.connection.id)
        if not admitted.allowed:
            # Accepted first so the client learns why (an error frame and a close
            # code) instead of a bare HTTP 403 it would retry at once.
            error = protocol.ProtocolError(
                "rate_limited", f"too many open connections: {admitted.limit}", retry_after=admitted.retry_after
            )
            await self.send(text_data=protocol.encode_error(error))
            self.connection.admitted = False
            await self.connection.terminate(protocol.CLOSE_TOO_MANY_CONNECTIONS, "too many connections")
            return
        self.connection.start()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections() in its one shared sync thread before
        # every handler; for each received frame that hop cost more than handling the
        # frame and serialised all sockets behind one thread. Frame handling reaches
        # the database only through database_sync_to_async, which does that clean-up.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
            return
        await super().dispatch(message)

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def _close(self, code: int, reason: str) -> None:
        await self.close(code=code, reason=reason)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.connection is not None:
            await self.connection.receive(text_data, bytes_data)

    async def disconnect(self, code: int) -> None:
        if self.connection is not None:
            await self.connection.stop()
            if self.connection.admitted:
                await connection_limiter().release(self.connection.principal, self.connection.id)
        for group in getattr(self, "control_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def realtime_revoke(self, event: dict[str, Any]) -> None:
        """Sign-out or token revocation: close if this connection authenticated that way."""
        if self.connection is None:
            return
        methods = event.get("methods")
        if methods and self.connection.principal.auth.method not in methods:
            return
        await self.connection.terminate(protocol.CLOSE_REVOKED, str(event.get("reason", "revoked")))
