"""The client: one WebSocket, many subscriptions, request/response by frame id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

Trace = Callable[[str, str, float], None]  # direction ("<" in, ">" out), raw frame, seconds since connect

# Close codes after which reconnecting cannot help: the credential was revoked (4002),
# or the server refuses this credential (4401 anonymous not allowed, 4403 refused).
# docs/protocol.md "Batching": several envelopes per frame, one per line, when both sides agree.
BATCH_SUBPROTOCOL = "webconnect.json.batch.v1"
# MessagePack binary frames (needs the `msgpack` package: pip install "webconnect-client[msgpack]").
MSGPACK_SUBPROTOCOL = "webconnect.msgpack.v1"
REFUSAL_CLOSE_CODES = frozenset({4002, 4401, 4403})
CLOSE_TOO_MANY_CONNECTIONS = 4429


class ServerError(Exception):
    """An `error` frame: the answer to one of our frames, or the end of a subscription."""

    def __init__(self, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after


class HandshakeRefused(ConnectionError):
    """The server answered the WebSocket upgrade with an HTTP error (403: the credential is refused)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{reason} (HTTP {status})")
        self.status = status
        self.reason = reason


class Disconnected(ConnectionError):
    """The connection closed and the client will not reconnect; `code` is the WebSocket close code."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason

    @property
    def refused(self) -> bool:
        """The server ended it on purpose (revoked or refused credential, too many connections)."""
        return self.code in REFUSAL_CLOSE_CODES or self.code == CLOSE_TOO_MANY_CONNECTIONS


@dataclass(frozen=True)
class Message:
    channel: str
    offset: int
    epoch: str
    payload: Any
    sender: dict[str, Any]
    ts: int
    encoding: str = "json"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


class Subscription:
    """Messages of one channel: iterate it (`async for`) or pass a callback to subscribe()."""

    def __init__(
        self,
        client: Client,
        channel: str,
        callback: Callable[[Message], Any] | None,
        on_gap: Callable[[Subscription], Any] | None,
        on_event: Callable[[dict[str, Any]], Any] | None,
        on_end: Callable[[Subscription], Any] | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.callback = callback
        self.on_gap = on_gap
        self.on_event = on_event
        self.on_end = on_end
        self.offset = 0
        self.epoch = ""
        self.recovered: bool | None = None
        # Why the subscription ended when the server (not this client) ended it: a ServerError
        # (policy change), HandshakeRefused (on reconnect) or Disconnected.
        self.ended: Exception | None = None
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()

    def _deliver(self, message: Message) -> None:
        if message.epoch == self.epoch and message.offset <= self.offset:
            return  # seen already (a recovery overlapping live delivery)
        self.offset, self.epoch = message.offset, message.epoch
        if self.callback is not None:
            result = self.callback(message)
            if asyncio.iscoroutine(result):
                self.client._spawn(result)
        else:
            self._queue.put_nowait(message)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            message = await self._queue.get()
            if message is None:
                return
            yield message

    async def get(self, timeout: float | None = None) -> Message:  # noqa: ASYNC109 - a per-call timeout is this API's contract
        message = await asyncio.wait_for(self._queue.get(), timeout)
        if message is None:
            self._queue.put_nowait(None)  # stays ended for the next get()
            raise self.ended or ConnectionError("subscription closed")
        return message

    def _end(self, error: Exception | None) -> None:
        if self.ended is None:
            self.ended = error
        self._queue.put_nowait(None)
        if error is not None and self.on_end is not None:
            result = self.on_end(self)
            if asyncio.iscoroutine(result):
                self.client._spawn(result)

    async def unsubscribe(self) -> None:
        await self.client.unsubscribe(self.channel)


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        ticket: str | Callable[[], Awaitable[str]] | None = None,
        reconnect: bool = True,
        backoff_base: float = 0.25,
        backoff_max: float = 30.0,
        request_timeout: float = 10.0,
        trace: Trace | None = None,
        max_attempts: int | None = None,
        batch: bool = False,
        msgpack: bool = False,
    ) -> None:
        self.url = url
        # Offer MessagePack: frames are then binary, and a bytes payload is published and received as bytes.
        self.msgpack = msgpack
        if msgpack:
            import msgpack as _msgpack  # optional dependency, only when asked for

            self._packb, self._unpackb = _msgpack.packb, _msgpack.unpackb
        # Offer the batching subprotocol: the server may then send several envelopes per frame.
        self.batch = batch
        self.token = token
        self.ticket = ticket
        self.reconnect = reconnect
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self.trace = trace
        self.max_attempts = max_attempts
        self.subscriptions: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._started = 0.0
        self.close_code: int | None = None
        self._background: set[asyncio.Future[Any]] = set()
        self.close_reason: str = ""
        self.last_error: ServerError | None = None  # the last error frame that answered none of ours
        self._retry_after = 0.0

    def _spawn(self, coroutine: Any) -> None:
        # Keep a reference so the task is not garbage-collected before it runs.
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- Connection ------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _open(self) -> None:
        self.close_reason = ""
        url, headers = self.url, {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.ticket is not None:
            # A ticket works once: a callable mints a new one for every (re)connect.
            ticket = self.ticket if isinstance(self.ticket, str) else await self.ticket()
            url += ("&" if "?" in url else "?") + f"ticket={ticket}"
        try:
            self._ws = await connect(
                url,
                additional_headers=headers,
                max_size=None,
                ping_interval=20,
                subprotocols=self._offers(),  # type: ignore[arg-type]
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise HandshakeRefused(status, self._refusal_reason(status)) from None
        self._started = time.monotonic()
        self._connected.set()

    def _offers(self) -> list[str] | None:
        if self.msgpack:
            return [MSGPACK_SUBPROTOCOL]
        return [BATCH_SUBPROTOCOL] if self.batch else None

    def _refusal_reason(self, status: int) -> str:
        # A refused upgrade carries no reason; what was refused is the credential we sent.
        if status not in {401, 403}:
            return f"the server refused the WebSocket upgrade at {self.url}"
        if self.token:
            return "invalid or expired token"
        if self.ticket is not None:
            return "invalid, used or expired ticket"
        return "a token is needed (this server refuses connections without one)"

    async def connect(self) -> None:
        self._closing = False
        await self._open()
        self._reader = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        for sub in self.subscriptions.values():
            sub._end(None)

    def _end_all(self, error: Exception | None) -> None:
        for sub in list(self.subscriptions.values()):
            sub._end(error)

    def _end_subscription(self, sub: Subscription, error: Exception) -> None:
        if self.subscriptions.get(sub.channel) is sub:
            del self.subscriptions[sub.channel]  # not resubscribed after a reconnect
        sub._end(error)

    async def _run(self) -> None:
        attempt = 0
        while True:
            assert self._ws is not None
            try:
                async for raw in self._ws:
                    if isinstance(raw, bytes) and self.msgpack_negotiated:
                        self._handle_msgpack(raw)
                    else:
                        self._handle_frame(raw if isinstance(raw, str) else raw.decode())
            except ConnectionClosed:
                pass
            self._connected.clear()
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or self.close_reason
            closed = Disconnected(self.close_code, self.close_reason)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(closed)
            self._pending.clear()
            if self._closing:
                self._end_all(None)
                return
            if not self.reconnect or self.close_code in REFUSAL_CLOSE_CODES:
                self._end_all(closed)
                return
            while True:  # reconnect with exponential backoff and full jitter
                attempt += 1
                if self.max_attempts is not None and attempt > self.max_attempts:
                    self._end_all(closed)
                    return
                delay = random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))
                # A connection limit says when to come back (rate_limited's retry_after).
                await asyncio.sleep(max(delay, self._retry_after))
                self._retry_after = 0.0
                try:
                    await self._open()
                    break
                except HandshakeRefused as refused:
                    if refused.status in {401, 403}:  # the credential is gone: retrying cannot help
                        self._end_all(refused)
                        return
                    continue
                except Exception:  # noqa: S112 - keep trying until max_attempts
                    continue
            attempt = 0
            self._spawn(self._resubscribe())

    async def _resubscribe(self) -> None:
        for sub in list(self.subscriptions.values()):
            since = {"offset": sub.offset, "epoch": sub.epoch} if sub.epoch else None
            try:
                await self._subscribe_frame(sub, since)
            except ServerError as error:
                if error.code == "rate_limited":
                    continue
                self._end_subscription(sub, error)  # refused now (say a policy changed meanwhile)
            except Exception:  # noqa: S112 - the next reconnect tries again
                continue

    # --- Frames -----------------------------------------------------------------------------

    @property
    def batching(self) -> bool:
        """The server agreed to batch (several newline-separated envelopes per frame)."""
        return self._ws is not None and self._ws.subprotocol == BATCH_SUBPROTOCOL

    @property
    def msgpack_negotiated(self) -> bool:
        """The server agreed to MessagePack (binary frames both ways)."""
        return self._ws is not None and self._ws.subprotocol == MSGPACK_SUBPROTOCOL

    def _handle_msgpack(self, raw: bytes) -> None:
        frame = self._unpackb(raw, raw=False)
        if self.trace is not None:
            self.trace("<", repr(frame), time.monotonic() - self._started)
        self._handle_value(frame)

    def _handle_frame(self, raw: str) -> None:
        if "\n" in raw and self.batching:
            for line in raw.split("\n"):
                self._handle(line)
        else:
            self._handle(raw)

    def _handle(self, raw: str) -> None:
        if self.trace is not None:
            self.trace("<", raw, time.monotonic() - self._started)
        self._handle_value(json.loads(raw))

    def _handle_value(self, frame: dict[str, Any]) -> None:
        header, payload = frame.get("header", {}), frame.get("payload")
        kind = header.get("type")
        if kind == "message":
            sub = self.subscriptions.get(header.get("channel"))
            if sub is not None:
                sub._deliver(
                    Message(
                        channel=header["channel"],
                        offset=header["offset"],
                        epoch=header["epoch"],
                        payload=payload,
                        sender=header.get("from", {}),
                        ts=header.get("ts", 0),
                        encoding="binary" if isinstance(payload, bytes) else header.get("encoding", "json"),
                        raw=frame,
                    )
                )
            return
        if kind == "ping":
            self._spawn(self._send({"header": {"type": "pong"}}))
            return
        if kind == "close":  # the server's reason for the close that follows
            self.close_reason = str((payload or {}).get("reason", ""))
            return
        if kind in {"join", "leave"}:
            sub = self.subscriptions.get(header.get("channel"))
            if sub is not None and sub.on_event is not None:
                sub.on_event(frame)
            return
        future = self._pending.pop(str(header.get("id")), None)
        if kind == "error":
            payload = payload if isinstance(payload, dict) else {}
            error = ServerError(payload.get("code", "internal"), payload.get("message", ""), payload.get("retry_after"))
            if future is None or future.done():
                self._unsolicited_error(header, error)
            else:
                future.set_exception(error)
        elif future is not None and not future.done():
            future.set_result(frame)

    def _unsolicited_error(self, header: dict[str, Any], error: ServerError) -> None:
        """An error frame answering none of ours: the server ended a subscription, or refused the connection."""
        self.last_error = error
        if error.code == "rate_limited" and error.retry_after:
            self._retry_after = float(error.retry_after)
        sub = self.subscriptions.get(str(header.get("channel")))
        if sub is None:
            # The frame names the channel only in its message ("... subscribe on chat.x is not allowed: ...").
            text = f" {error.message} "
            named = [s for name, s in self.subscriptions.items() if f" on {name} " in text]
            if len(named) == 1:
                sub = named[0]
            elif error.message.startswith("subscription ended") and len(self.subscriptions) == 1:
                sub = next(iter(self.subscriptions.values()))
        if sub is not None:
            self._end_subscription(sub, error)

    async def _send(self, frame: dict[str, Any]) -> None:
        if self._ws is None:
            raise ConnectionError("not connected")
        if self.msgpack_negotiated:
            if self.trace is not None:
                self.trace(">", repr(frame), time.monotonic() - self._started)
            await self._ws.send(self._packb(frame, use_bin_type=True))
            return
        raw = json.dumps(frame, separators=(",", ":"))
        if self.trace is not None:
            self.trace(">", raw, time.monotonic() - self._started)
        await self._ws.send(raw)

    async def _call(self, header: dict[str, Any], payload: Any = None, timeout: float | None = None) -> dict[str, Any]:  # noqa: ASYNC109 - a per-call timeout is this API's contract
        frame_id = f"p{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        try:
            await self._send({"header": {**header, "id": frame_id}, "payload": payload})
            return await asyncio.wait_for(future, timeout or self.request_timeout)
        finally:
            self._pending.pop(frame_id, None)

    # --- API ------------------------------------------------------------------------------

    async def subscribe(
        self,
        channel: str,
        callback: Callable[[Message], Any] | None = None,
        *,
        since: tuple[int, str] | None = None,
        on_gap: Callable[[Subscription], Any] | None = None,
        on_event: Callable[[dict[str, Any]], Any] | None = None,
        on_end: Callable[[Subscription], Any] | None = None,
    ) -> Subscription:
        """Subscribe; `on_end(sub)` runs if the server ends it (the reason is `sub.ended`)."""
        sub = Subscription(self, channel, callback, on_gap, on_event, on_end)
        self.subscriptions[channel] = sub
        try:
            await self._subscribe_frame(sub, {"offset": since[0], "epoch": since[1]} if since else None)
        except BaseException:
            self.subscriptions.pop(channel, None)
            raise
        return sub

    async def _subscribe_frame(self, sub: Subscription, since: dict[str, Any] | None) -> None:
        ack = await self._call({"type": "subscribe", "channel": sub.channel}, {"since": since} if since else None)
        result = ack.get("payload") or {}
        sub.recovered = result.get("recovered")
        if sub.recovered is False and sub.on_gap is not None:
            sub.on_gap(sub)  # the server could not fill the gap: the application reloads its state
        # Live messages may have been handled before this ack: never move backwards.
        if result.get("epoch") != sub.epoch:
            sub.epoch, sub.offset = result.get("epoch", ""), result.get("offset", 0)
        elif sub.recovered is not True:
            sub.offset = max(sub.offset, result.get("offset", 0))

    async def unsubscribe(self, channel: str) -> None:
        sub = self.subscriptions.pop(channel, None)
        if sub is not None:
            sub._end(None)
        await self._call({"type": "unsubscribe", "channel": channel})

    async def publish(self, channel: str, payload: Any, *, encoding: str = "json") -> dict[str, Any]:
        header: dict[str, Any] = {"type": "publish", "channel": channel}
        if encoding != "json":
            header["encoding"] = encoding
        return dict((await self._call(header, payload)).get("payload") or {})

    async def request(self, method: str, payload: Any = None, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109 - a per-call timeout is this API's contract
        return (await self._call({"type": "request", "method": method}, payload, timeout)).get("payload")

    async def presence(self, channel: str) -> list[dict[str, Any]]:
        return list((await self._call({"type": "presence", "channel": channel})).get("payload", {}).get("clients", []))

    async def history(self, channel: str, limit: int = 50) -> dict[str, Any]:
        return dict((await self._call({"type": "history", "channel": channel}, {"limit": limit})).get("payload") or {})

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._call({"type": "ping"})
        return time.perf_counter() - started

    async def wait_connected(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - a per-call timeout is this API's contract
        await asyncio.wait_for(self._connected.wait(), timeout)
