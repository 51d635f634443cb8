"""The HTTP fallback: one channel as Server-Sent Events (`GET /api/channels/{channel}/events/`).

For clients whose network does not pass WebSocket upgrades. The stream is a hub subscriber like
a socket (same process, same bus, same history), so it has the same guarantees: registered
first, then the position or the recovery read, live frames held meanwhile and de-duplicated by
offset, so the seam has no gap; after a bus reconnect the gap is filled from history or the
client is told `recovered: false`. Each event's `id` is `<epoch>:<offset>`, which the browser's
EventSource sends back as `Last-Event-ID` when it reconnects; `?since=<epoch>:<offset>` does the
same on a first connection.

Events (`data` is one envelope, exactly as on /ws/, on one line):
- `subscribed`: first, `{"offset", "epoch"[, "recovered"]}` like a subscribe's ack, and again with
  `recovered: false` when a gap could not be filled;
- `message`: a channel message (the /ws/ `message` frame), `id: <epoch>:<offset>`;
- `join` / `leave`: as on /ws/;
- `error`: the stream ends (`{"code", "message", "close_code"}`): the policy no longer allows it
  (`forbidden`), the credential was revoked or expired (`revoked`), the process is shutting down
  (`going_away`, reconnect), or the client fell `REALTIME_QUEUE_SIZE` events behind
  (`slow_consumer`, reconnect). `close_code` is the WebSocket close code /ws/ would have sent.

A stream is a live session of the kernel (`webconnect.kernel.sessions`): sign-out, token
revocation, expiry, policy changes and shutdown end it at once, exactly as they close sockets.
- a comment line `: ping` every `REALTIME_SSE_HEARTBEAT_SECONDS`, which keeps proxies from
  closing an idle stream. The authorization is checked again at each heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone

from webconnect.identity import Principal
from webconnect.kernel import codes, sessions, startup
from webconnect.realtime import metrics, protocol, services
from webconnect.realtime.hub import get_hub
from webconnect.realtime.selectors import NamespaceConfig

logger = logging.getLogger(__name__)

_END = (-1, "")  # the reader fell behind
_FINAL = (-2, "")  # the stream was ended (revoked, forbidden, shutdown): `EventStream.final` says why

# Error codes an SSE client sees for the kernel's close codes.
_ERROR_CODES = {
    codes.REVOKED: "revoked",
    codes.FORBIDDEN: "forbidden",
    codes.PERMISSIONS_CHANGED: "forbidden",
    codes.GOING_AWAY: "going_away",
    codes.UNAVAILABLE: "unavailable",
    codes.SERVER_ERROR: "server_error",
}


def parse_event_id(value: str | None) -> protocol.Since | None:
    """`<epoch>:<offset>` (an event id) as a position; ProtocolError when malformed."""
    if not value:
        return None
    epoch, _, offset = value.rpartition(":")
    if not epoch or not offset.isdigit() or len(offset) > protocol.MAX_INT_DIGITS or len(epoch) > 64:
        raise protocol.ProtocolError("bad_request", "Last-Event-ID / since must be <epoch>:<offset>")
    return protocol.Since(int(offset), epoch)


def event(kind: str, data: str, event_id: str | None = None) -> bytes:
    # `data` is one JSON envelope: protocol.py never writes a raw newline into one.
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n".encode()


@dataclass
class _Position:
    offset: int
    epoch: str


class EventStream:
    """One SSE client's subscription: a hub subscriber feeding a bounded queue of encoded events."""

    def __init__(self, principal: Principal, channel: str, namespace: NamespaceConfig) -> None:
        self.principal = principal
        self.channel = channel
        self.namespace = namespace
        self.position = _Position(0, "")
        self.queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue(maxsize=settings.REALTIME_QUEUE_SIZE + 1)
        # Live frames wait here while the subscription is answered or a gap refilled; None while live.
        self.pending: list[tuple[int, str]] | None = []
        self.ended = False
        self.final = b""
        self._expiry: asyncio.TimerHandle | None = None

    # --- Hub subscriber ----------------------------------------------------------------------

    def deliver(self, channel: str, offset: int, text: str) -> bool:
        if self.ended:
            return False
        if self.pending is not None:
            self.pending.append((offset, text))
            return False
        if offset:
            if offset <= self.position.offset:
                return False  # already sent (recovered from history)
            self.position.offset = offset
        self._put(offset, text)
        return True

    def hold(self, channel: str) -> None:
        if self.pending is None:
            self.pending = []

    async def resync(self, channel: str) -> None:
        if self.ended:
            return
        self.hold(channel)
        try:
            recovery = await get_hub().recover(
                channel, self.namespace, protocol.Since(self.position.offset, self.position.epoch)
            )
        except Exception:
            recovery = None
            logger.warning("sse: history of %s unreadable after a reconnect", channel, exc_info=True)
        if recovery is not None:
            for offset, text in recovery.messages:
                if offset > self.position.offset:
                    self.position.offset = offset
                    self._put(offset, text)
        if recovery is None or not recovery.recovered:
            if recovery is not None:
                self.position = _Position(recovery.position.offset, recovery.position.epoch)
            self._put(0, self._subscribed(recovered=False))
        self._release()

    # --- Stream ------------------------------------------------------------------------------------

    def _put(self, offset: int, text: str) -> None:
        if self.ended:
            return
        if self.queue.qsize() >= settings.REALTIME_QUEUE_SIZE:
            # A slow reader: end the stream (the last slot is the marker) rather than grow.
            self.ended = True
            self.queue.put_nowait(_END)
            return
        self.queue.put_nowait((offset, text))

    def _release(self) -> None:
        pending, self.pending = self.pending or [], None
        for offset, text in pending:
            self.deliver(self.channel, offset, text)

    def _subscribed(self, **extra: Any) -> str:
        payload = {"offset": self.position.offset, "epoch": self.position.epoch, **extra}
        return protocol.encode("subscribed", payload, channel=self.channel)

    async def open(self, since: protocol.Since | None) -> str:
        """Register with the hub and read the starting position: the `subscribed` envelope."""
        hub = get_hub()
        await hub.start()
        sessions.registry().add(self)
        expires_at = self.principal.auth.expires_at
        if expires_at is not None:
            delay = max(0.0, (expires_at - timezone.now()).total_seconds())
            self._expiry = asyncio.get_running_loop().call_later(
                delay, lambda: startup.spawn(self.end_session(codes.REVOKED, "token expired"))
            )
        hub.add(self.channel, self)
        try:
            await hub.subscribed(self.channel)
            recovered: list[tuple[int, str]] = []
            extra: dict[str, Any] = {}
            if since is not None:
                recovery = await hub.recover(self.channel, self.namespace, since)
                position, recovered = recovery.position, recovery.messages
                extra["recovered"] = recovery.recovered
            else:
                position = await hub.position(self.channel, self.namespace)
        except BaseException:
            self.close()
            raise
        # No await from here on: the subscribed event, recovered messages, then held live ones.
        self.position = _Position(position.offset, position.epoch)
        opening = self._subscribed(**extra)
        for offset, text in recovered:
            if offset <= position.offset:
                self._put(offset, text)
        self._release()
        return opening

    def close(self) -> None:
        self.ended = True
        sessions.registry().discard(self)
        if self._expiry is not None:
            self._expiry.cancel()
        get_hub().remove(self.channel, self)

    # --- Kernel session: revocation, policy changes and shutdown end the stream -----------------

    async def end_session(self, code: int, reason: str, error: str | None = None) -> None:
        if self.final:
            return
        code = codes.wire_code(code)
        payload = {"code": error or _ERROR_CODES.get(code, "closed"), "message": reason, "close_code": code}
        self.final = event("error", protocol.dumps(payload))
        # Nothing queued is sent after the end: access ends now, not after the backlog.
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(_FINAL)
        self.close()

    async def recheck(self) -> None:
        if self.final:
            return
        try:
            await services.check_channel_action(self.principal, "subscribe", self.channel)
        except protocol.ProtocolError as error:
            await self.end_session(codes.FORBIDDEN, error.message, error.code)
        except Exception:  # a storage outage: keep streaming; the heartbeat checks again
            logger.warning("sse: re-authorizing %s failed", self.channel, exc_info=True)

    def event_for(self, offset: int, text: str) -> bytes:
        if text.startswith('{"header":{"type":"subscribed"'):
            return event("subscribed", text)
        if offset:
            return event("message", text, f"{self.position.epoch}:{offset}")
        kind = "join" if text.startswith('{"header":{"type":"join"') else "leave"
        return event(kind, text)

    async def events(self) -> AsyncIterator[bytes]:
        heartbeat = float(settings.REALTIME_SSE_HEARTBEAT_SECONDS)
        while True:
            try:
                offset, text = await asyncio.wait_for(self.queue.get(), heartbeat)
            except TimeoutError:
                # A policy poll missed by this process is caught here at the latest.
                await self.recheck()
                if self.final:
                    yield self.final
                    return
                yield b": ping\n\n"
                continue
            if (offset, text) == _FINAL:
                yield self.final
                return
            if (offset, text) == _END:
                metrics.ERRORS.labels("slow_consumer").inc()
                message = f"more than {settings.REALTIME_QUEUE_SIZE} events behind: reconnect with Last-Event-ID"
                yield event("error", protocol.dumps({"code": "slow_consumer", "message": message}))
                return
            yield self.event_for(offset, text)


async def channel_events(principal: Principal, channel: str, since: protocol.Since | None) -> AsyncIterator[bytes]:
    """Authorize (ProtocolError before the first byte) and return the stream's byte chunks."""
    await startup.ensure_started()
    namespace = await services.check_channel_action(principal, "subscribe", channel)
    stream = EventStream(principal, channel, namespace)
    opening = await stream.open(since)
    return _run(stream, opening)


async def _run(stream: EventStream, opening: str) -> AsyncIterator[bytes]:
    try:
        # The browser waits this long before reconnecting (with Last-Event-ID) after a drop.
        yield b"retry: 1000\n\n" + event("subscribed", opening)
        async for chunk in stream.events():
            yield chunk
    finally:
        stream.close()
