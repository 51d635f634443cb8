"""One live real-time connection: its subscriptions, outgoing queue and timers.

The consumer owns one of these and forwards frames to it. Outgoing frames go
through a bounded queue drained by a writer task, so a fan-out never waits on
a slow socket; a connection whose queue fills up is closed ("slow consumer")
instead of growing memory without bound.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from webconnect.identity import Principal
from webconnect.kernel import codes
from webconnect.kernel.outages import is_unavailable
from webconnect.realtime import metrics, pipeline, protocol, protocol_msgpack, services
from webconnect.realtime.hub import get_hub
from webconnect.realtime.selectors import NamespaceConfig

logger = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


@functools.cache
def _frame_metrics(kind: str) -> tuple[Any, Any]:
    # labels() takes a lock and builds a key on every call; the set of kinds is small and fixed.
    return metrics.FRAMES_IN.labels(kind), metrics.LATENCY.labels(kind)


@functools.cache
def _frames_out(kind: str) -> Any:
    return metrics.FRAMES_OUT.labels(kind)


@dataclass
class _Subscription:
    namespace: NamespaceConfig
    last_offset: int = 0
    epoch: str = ""
    # While a subscribe is being answered, or history refills a gap after the
    # bus lost its Redis subscription, live frames wait here so that the
    # recovered ones go out first, in order; None while live.
    pending: list[tuple[int, str]] | None = field(default_factory=list)
    live: bool = False  # the subscribe was answered


class Connection:
    """The /ws/ protocol of one socket; its lifecycle is the kernel's (RealtimeConsumer)."""

    def __init__(
        self,
        principal: Principal,
        send_text: SendText,
        close: Close,
        id: str,
        *,
        batching: bool = False,
        send_msgpack: SendBytes | None = None,
    ) -> None:
        self.id = id
        self.batching = batching  # the client negotiated protocol.BATCH_SUBPROTOCOL
        # Set when the client negotiated protocol.MSGPACK_SUBPROTOCOL: frames go out as MessagePack.
        self._send_msgpack = send_msgpack
        self.principal = principal
        self._send_text = send_text
        self._close = close
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=settings.REALTIME_QUEUE_SIZE)
        self.subscriptions: dict[str, _Subscription] = {}
        self.publish_namespaces: dict[str, NamespaceConfig] = {}  # authorized publish targets
        self.closing = False
        self.ctx = pipeline.FrameContext(principal, self.id)
        self.identity = services.public_identity(principal)
        self._writer_task = asyncio.get_running_loop().create_task(self._writer())
        self._live = True
        metrics.CONNECTIONS.inc()

    # --- Life cycle ------------------------------------------------------------------

    async def stop(self) -> None:
        """Forget everything this connection holds; safe to call more than once."""
        if self._live:
            self._live = False
            metrics.CONNECTIONS.dec()
        self.closing = True
        self._writer_task.cancel()
        for channel in list(self.subscriptions):
            await self._drop_subscription(channel)

    async def terminate(self, code: int, reason: str) -> None:
        """End the socket through the kernel (close notice, close code, clean-up)."""
        if self.closing:
            return
        metrics.DISCONNECTS.labels(reason).inc()
        await self._close(code, reason)

    async def _writer(self) -> None:
        # Encoded once by the hub, written once here: a batching client gets whatever queued
        # up meanwhile in one frame, any other client one frame per envelope.
        queue, send = self.queue, self._send_text
        try:
            if self._send_msgpack is not None:
                send_binary, transcode = self._send_msgpack, protocol_msgpack.from_json
                while True:
                    await send_binary(transcode(await queue.get()))
            if not self.batching:
                while True:
                    await send(await queue.get())
            while True:
                text = await queue.get()
                if not queue.empty():
                    batch, size = [text], len(text)
                    while size < protocol.BATCH_MAX_CHARS and not queue.empty():
                        text = queue.get_nowait()
                        batch.append(text)
                        size += len(text)
                    text = protocol.join_batch(batch)
                await send(text)
        except Exception:
            logger.debug("write to connection %s failed", self.id, exc_info=True)

    # --- Output ---------------------------------------------------------------------------

    def send(self, text: str, kind: str) -> None:
        if self.closing:
            return
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._slow_consumer()
            return
        _frames_out(kind).inc()

    def _slow_consumer(self) -> None:
        if self.closing:
            return
        metrics.ERRORS.labels("slow_consumer").inc()
        asyncio.get_running_loop().create_task(self.terminate(codes.SLOW_CONSUMER, "slow consumer"))

    def send_error(self, error: protocol.ProtocolError) -> None:
        metrics.ERRORS.labels(error.code).inc()
        self.send(protocol.encode_error(error), "error")

    def ack(self, frame: protocol.Frame, payload: Any = None) -> None:
        self.send(protocol.encode("ack", payload, id=frame.id, channel=frame.channel), "ack")

    def deliver(self, channel: str, offset: int, text: str) -> bool:
        """Called by the hub for every frame on a channel this connection subscribes to.

        True if the frame was queued; the hub counts them (one metrics update per fan-out, not per socket).
        """
        sub = self.subscriptions.get(channel)
        if sub is None or self.closing:
            return False
        if sub.pending is not None:
            sub.pending.append((offset, text))
            return False
        if offset:
            if offset <= sub.last_offset:
                return False  # already sent (recovered from history)
            sub.last_offset = offset
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._slow_consumer()
            return False
        return True

    # --- Input ----------------------------------------------------------------------------

    async def receive(self, text: str | None, data: bytes | None) -> None:
        if self.closing:
            return
        msgpack = self._send_msgpack is not None
        if msgpack and data is None:
            metrics.FRAMES_IN.labels("text").inc()
            self.send_error(protocol.ProtocolError("bad_request", "text frames are not accepted: send MessagePack"))
            return
        if not msgpack and text is None:
            metrics.FRAMES_IN.labels("binary").inc()
            self.send_error(protocol.ProtocolError("bad_request", "binary frames are not accepted: send JSON text"))
            return
        # Checked before parsing: an anonymous socket (a reader of anonymous_read namespaces) only
        # subscribes and asks for history, so it gets a small budget.
        limit = (
            settings.REALTIME_MAX_FRAME_BYTES
            if self.principal.is_authenticated
            else settings.REALTIME_ANONYMOUS_MAX_FRAME_BYTES
        )
        if data is not None and msgpack:
            too_large = len(data) > limit
        else:
            assert text is not None
            too_large = len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit
        if too_large:
            metrics.ERRORS.labels("too_large").inc()
            await self.terminate(codes.TOO_LARGE, f"frame larger than {limit} bytes")
            return
        started = time.perf_counter()
        kind = "invalid"
        frame: protocol.Frame | None = None
        try:
            if data is not None and msgpack:
                frame = protocol_msgpack.parse_frame(data)
            else:
                assert text is not None
                frame = protocol.parse_frame(text)
            kind = frame.type
            frame = await pipeline.run(self.ctx, frame)
            if frame is not None:
                await self._dispatch(frame)
        except protocol.ProtocolError as error:
            self.send_error(error)
        except Exception as exc:
            if is_unavailable(exc):
                # Redis or the database is down: the client may retry (nothing was stored).
                logger.warning("real-time frame refused, storage unavailable: %s", exc)
                frame_id = frame.id if frame is not None else None
                self.send_error(
                    protocol.ProtocolError("unavailable", "storage unavailable: retry", id=frame_id, retry_after=1)
                )
                return
            logger.exception("real-time frame handling failed (connection %s)", self.id)
            self.send_error(protocol.ProtocolError("internal", "internal error"))
        finally:
            frames_in, latency = _frame_metrics(kind)
            frames_in.inc()
            latency.observe(time.perf_counter() - started)

    async def _dispatch(self, frame: protocol.Frame) -> None:
        if frame.type == "publish":
            await self._publish(frame)
        elif frame.type == "subscribe":
            await self._subscribe(frame)
        elif frame.type == "unsubscribe":
            await self._unsubscribe(frame)
        elif frame.type == "ping":
            self.send(protocol.encode("pong", None, id=frame.id), "pong")
        elif frame.type == "pong":
            pass
        elif frame.type == "presence":
            assert frame.channel is not None
            result = await services.channel_presence(principal=self.principal, channel=frame.channel, id=frame.id)
            self.ack(frame, result)
        elif frame.type == "history":
            await self._history(frame)
        elif frame.type == "request":
            await self._request(frame)

    async def _publish(self, frame: protocol.Frame) -> None:
        channel = frame.channel
        assert channel is not None
        namespace = self.publish_namespaces.get(channel)
        if namespace is None:
            namespace = await services.check_channel_action(self.principal, "publish", channel, id=frame.id)
            if len(self.publish_namespaces) < 1000:
                self.publish_namespaces[channel] = namespace
        position = await services.channel_publish(
            principal=self.principal,
            channel=channel,
            payload=frame.payload,
            encoding=frame.encoding,
            id=frame.id,
            namespace=namespace,
        )
        if frame.id is not None:
            self.ack(frame, {"offset": position.offset, "epoch": position.epoch})

    async def _subscribe(self, frame: protocol.Frame) -> None:
        channel = frame.channel
        assert channel is not None
        if channel in self.subscriptions:
            sub = self.subscriptions[channel]
            self.ack(frame, {"offset": sub.last_offset, "already": True})
            return
        if len(self.subscriptions) >= settings.REALTIME_MAX_SUBSCRIPTIONS:
            raise protocol.ProtocolError(
                "limit_exceeded", f"at most {settings.REALTIME_MAX_SUBSCRIPTIONS} subscriptions", id=frame.id
            )
        namespace = await services.check_channel_action(self.principal, "subscribe", channel, id=frame.id)
        hub = get_hub()
        await hub.start()
        sub = self.subscriptions[channel] = _Subscription(namespace)
        # Register first, then read history: whatever is published in between is
        # held in `pending` and de-duplicated by offset, so the seam has no gap.
        hub.add(channel, self)
        metrics.SUBSCRIPTIONS.inc()
        try:
            await hub.subscribed(channel)  # acknowledged only once this process receives the channel
            result: dict[str, Any]
            recovered: list[tuple[int, str]] = []
            if frame.since is not None:
                recovery = await hub.recover(channel, namespace, frame.since)
                position = recovery.position
                recovered = recovery.messages
                result = {"offset": position.offset, "epoch": position.epoch, "recovered": recovery.recovered}
            else:
                position = await hub.position(channel, namespace)
                result = {"offset": position.offset, "epoch": position.epoch}
        except BaseException:
            await self._drop_subscription(channel)
            raise
        if self.subscriptions.get(channel) is not sub:
            return  # unsubscribed or closed meanwhile
        # No await from here on: ack, recovered messages and held live ones are queued in order.
        self.ack(frame, result)
        sub.last_offset = position.offset
        sub.epoch = position.epoch
        for offset, text in recovered:
            if offset <= position.offset:
                self.send(text, "message")
        pending, sub.pending = sub.pending or [], None
        sub.live = True
        for offset, text in pending:
            self.deliver(channel, offset, text)
        if namespace.presence or namespace.join_leave:
            await self._announce(channel, namespace, joined=True)

    async def _announce(self, channel: str, namespace: NamespaceConfig, *, joined: bool) -> None:
        hub = get_hub()
        if namespace.presence:
            if joined:
                await hub.presence.add(channel, self.id, self.identity)
            else:
                await hub.presence.remove(channel, self.id)
        if namespace.join_leave:
            await hub.broadcast_event(
                channel, protocol.encode("join" if joined else "leave", self.identity, channel=channel)
            )

    async def _unsubscribe(self, frame: protocol.Frame) -> None:
        assert frame.channel is not None
        if frame.channel not in self.subscriptions:
            raise protocol.ProtocolError("not_found", f"not subscribed to {frame.channel}", id=frame.id)
        await self._drop_subscription(frame.channel)
        self.ack(frame, None)

    async def _drop_subscription(self, channel: str) -> None:
        sub = self.subscriptions.pop(channel, None)
        if sub is None:
            return
        get_hub().remove(channel, self)
        metrics.SUBSCRIPTIONS.dec()
        if sub.namespace.presence or sub.namespace.join_leave:
            try:
                await self._announce(channel, sub.namespace, joined=False)
            except Exception:
                logger.warning("leave announcement for %s failed", channel, exc_info=True)

    async def _history(self, frame: protocol.Frame) -> None:
        assert frame.channel is not None and frame.limit is not None
        namespace = await services.check_channel_action(self.principal, "history", frame.channel, id=frame.id)
        entries, position = await get_hub().latest(frame.channel, namespace, frame.limit)
        # The stored frames are already encoded: splice them in rather than re-encoding.
        head = protocol.dumps({"type": "ack", "id": frame.id, "channel": frame.channel})
        meta = protocol.dumps({"offset": position.offset, "epoch": position.epoch})[1:-1]
        body = ",".join(text for _, text in entries)
        self.send(f'{{"header":{head},"payload":{{{meta},"messages":[{body}]}}}}', "ack")

    async def _request(self, frame: protocol.Frame) -> None:
        assert frame.method is not None
        method = pipeline.request_methods().get(frame.method)
        if method is None:
            raise protocol.ProtocolError("not_found", f"no request method {frame.method!r}", id=frame.id)
        result = await method(self.ctx, frame.payload)
        self.send(protocol.encode("response", result, id=frame.id, method=frame.method), "response")

    # --- After a bus reconnect ------------------------------------------------------------

    def hold(self, channel: str) -> None:
        """The bus lost its Redis subscription: hold live frames until `resync` has filled the gap."""
        sub = self.subscriptions.get(channel)
        if sub is not None and sub.live and sub.pending is None:
            sub.pending = []

    async def resync(self, channel: str) -> None:
        """This process may have missed messages on `channel`: fill the gap from history or say so."""
        sub = self.subscriptions.get(channel)
        if sub is None or not sub.live or self.closing:
            return
        if sub.pending is None:
            sub.pending = []
        try:
            recovery = await get_hub().recover(
                channel, sub.namespace, protocol.Since(offset=sub.last_offset, epoch=sub.epoch)
            )
        except Exception:
            recovery = None
            logger.warning("real-time: history of %s unreadable after a reconnect", channel, exc_info=True)
        if self.subscriptions.get(channel) is not sub:
            return
        if recovery is not None:
            # No await from here on: recovered frames, then the held live ones, in order.
            for offset, text in recovery.messages:
                if offset > sub.last_offset:
                    sub.last_offset = offset
                    self.send(text, "message")
        if recovery is None or not recovery.recovered:
            position = recovery.position if recovery is not None else None
            if position is not None:
                sub.last_offset, sub.epoch = position.offset, position.epoch
            payload = {
                "offset": sub.last_offset,
                "epoch": sub.epoch,
                "recovered": False,
            }
            self.send(protocol.encode("subscribed", payload, channel=channel), "subscribed")
        pending, sub.pending = sub.pending or [], None
        metrics.FRAMES_OUT_MESSAGE.inc(sum(self.deliver(channel, offset, text) for offset, text in pending))

    # --- Policy changes ---------------------------------------------------------------------

    async def recheck(self) -> None:
        """Re-authorize every live subscription; drop (with an error frame) what is now denied."""
        self.publish_namespaces.clear()
        for channel in list(self.subscriptions):
            try:
                await services.check_channel_action(self.principal, "subscribe", channel)
            except protocol.ProtocolError as error:
                await self._drop_subscription(channel)
                self.send_error(
                    protocol.ProtocolError(error.code, f"subscription ended: {error.message}", channel=channel)
                )
