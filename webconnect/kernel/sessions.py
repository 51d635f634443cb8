"""One connection lifecycle for every WebSocket endpoint.

`SessionConsumer` is the base of every consumer (`/ws/`, `/ws/docs/<id>`): it
says who is calling (`webconnect.identity`), asks the endpoint whether the
caller may open it, admits the socket under the connection limits, keeps it in
this process's session registry (indexed by user and by token, which is how
sign-out and revocation find it), closes it when its token expires, re-checks
it on every policy change, runs its heartbeat and idle timeout, and closes it
with a code that reaches the client (`webconnect.kernel.codes`). Endpoints
implement the hooks; nothing of this is written twice.

Control messages (revocation, policy changes) arrive on the bus and are
handled on this process's event loop, so a forbid saved in a request thread
re-checks sockets where they live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from webconnect.authorization import connection_limiter
from webconnect.identity import Principal, RateDecision, forget_access_tokens, principal_from_scope
from webconnect.kernel import codes, startup
from webconnect.kernel.bus import BusUnavailable, get_bus
from webconnect.kernel.outages import is_unavailable

logger = logging.getLogger(__name__)

CONTROL = "ctl"  # bus kind of control messages


class Refusal(Exception):
    """The endpoint will not open (or keep) this socket: close with `code`, tell the client `reason`."""

    def __init__(self, code: int, reason: str, *, before_accept: bool = False) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.before_accept = before_accept  # refuse the upgrade itself (HTTP 403)


class SessionConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """The lifecycle; subclasses implement `session_*` hooks for their protocol."""

    endpoint = "ws"
    # Sockets reach other processes through the kernel's bus, never the channel
    # layer. An alias naming no layer keeps Channels from opening a layer channel
    # per socket: with channels_redis that is a Redis receive loop per socket, and
    # a Redis restart ended every socket of the process with 1011 through it.
    channel_layer_alias = "no-channel-layer"
    principal: Principal
    session_id: str
    closing = False
    opened = False
    admitted = False

    # --- Hooks ------------------------------------------------------------------------

    async def session_authorize(self) -> None:
        """Raise Refusal if the caller may not open this endpoint."""

    async def session_opened(self) -> None:
        """The socket is accepted and admitted: start the protocol."""

    async def session_receive(self, text: str | None, data: bytes | None) -> None:
        """One frame from the client."""

    async def session_notice(self, code: int, reason: str) -> None:
        """Tell the client why, in the protocol's own terms, just before closing."""

    async def session_refused(self, refusal: RateDecision) -> None:
        """The connection limits refuse this socket (a notice is sent, then close 4429)."""

    async def session_closed(self) -> None:
        """Forget everything the endpoint holds for this socket (safe to call twice)."""

    async def session_recheck(self) -> None:
        """Policies changed: re-authorize what this socket holds; raise Refusal to end it."""

    async def session_heartbeat(self) -> None:
        """Every heartbeat interval while open (e.g. a protocol ping)."""

    def idle_timeout(self) -> float | None:
        """Close after this many seconds without a frame; None: WebSocket pings detect dead peers."""
        return None

    # --- Lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        self.principal = principal_from_scope(self.scope)
        self.session_id = secrets.token_hex(6)
        self.last_seen = time.monotonic()
        self._timers: list[asyncio.TimerHandle] = []
        self._heartbeat_task: asyncio.Task[None] | None = None
        try:
            if startup.shutting_down:
                raise Refusal(codes.GOING_AWAY, "server restarting: reconnect")
            await startup.ensure_started()
            await self.session_authorize()
        except Refusal as refusal:
            if refusal.before_accept:
                await self.close(code=refusal.code)  # before accept: the upgrade answers HTTP 403
                self.closing = True
                return
            await self.accept(self._subprotocol())
            await self.end_session(refusal.code, refusal.reason)
            return
        except Exception as exc:
            await self.accept(self._subprotocol())
            await self._end_on_error(exc, "opening")
            return
        await self.accept(self._subprotocol())
        try:
            decision = await connection_limiter().admit(self.principal, self.session_id)
        except Exception as exc:
            await self._end_on_error(exc, "admitting")
            return
        self.admitted = True
        if not decision.allowed:
            with contextlib.suppress(Exception):
                await self.session_refused(decision)
            await self.end_session(codes.TOO_MANY_CONNECTIONS, f"too many connections: {decision.limit}")
            return
        registry().add(self)
        self._arm_expiry()
        self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())
        self.opened = True
        try:
            await self.session_opened()
        except Refusal as refusal:
            await self.end_session(refusal.code, refusal.reason)
        except Exception as exc:
            await self._end_on_error(exc, "starting")

    def _subprotocol(self) -> str | None:
        return None

    async def send_text_frame(self, text: str) -> None:
        """One text frame, straight to the server (Channels' `send` builds the same message in two more calls)."""
        await self.base_send({"type": "websocket.send", "text": text})

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels runs close_old_connections() in its one shared thread before every
        # handler; per frame (and per handshake, in a reconnect storm) that hop cost
        # more than the handler. Sessions reach the database only through threads
        # that do that clean-up themselves (database_sync_to_async).
        kind = message["type"]
        if kind == "websocket.receive":
            await self.websocket_receive(message)
        elif kind == "websocket.connect":
            await self.websocket_connect(message)
        elif kind == "websocket.disconnect":
            await self.websocket_disconnect(message)
        else:
            await super().dispatch(message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing or not self.opened:
            return
        self.last_seen = time.monotonic()
        try:
            await self.session_receive(text_data, bytes_data)
        except Refusal as refusal:
            await self.end_session(refusal.code, refusal.reason)
        except Exception as exc:
            # Escaping to Channels would end the socket with 1011 (or leave it open
            # and silent); a storage outage must reach the client as UNAVAILABLE.
            await self._end_on_error(exc, "receiving")

    async def disconnect(self, code: int) -> None:
        self.closing = True
        await self._forget()

    async def end_session(self, code: int, reason: str) -> None:
        """Close with a code the client receives (4000-4999), and forget the socket. Idempotent."""
        if self.closing:
            return
        self.closing = True
        code = codes.wire_code(code)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.session_notice(code, reason), 1)
        with contextlib.suppress(Exception):
            await self.close(code=code, reason=reason.encode()[:120].decode(errors="ignore"))
        # Forget now: the disconnect event may come late, and nothing more must
        # reach or come from this socket.
        await self._forget()

    async def _end_on_error(self, exc: BaseException, doing: str) -> None:
        if is_unavailable(exc):
            logger.warning("%s session: storage unavailable while %s: %s", self.endpoint, doing, exc)
            await self.end_session(codes.UNAVAILABLE, "storage unavailable: reconnect and retry")
        else:
            logger.error("%s session: failed while %s", self.endpoint, doing, exc_info=exc)
            await self.end_session(codes.SERVER_ERROR, "internal error")

    async def _forget(self) -> None:
        registry().discard(self)
        for timer in getattr(self, "_timers", []):
            timer.cancel()
        self._timers = []
        task = getattr(self, "_heartbeat_task", None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._heartbeat_task = None
        try:
            await self.session_closed()
        except Exception:
            logger.exception("%s session: clean-up failed", self.endpoint)
        if self.admitted:
            self.admitted = False
            with contextlib.suppress(Exception):
                await connection_limiter().release(self.principal, self.session_id)

    # --- Timers ---------------------------------------------------------------------------

    def _arm_expiry(self) -> None:
        expires_at = self.principal.auth.expires_at
        if expires_at is None:
            return
        delay = max(0.0, (expires_at - timezone.now()).total_seconds())
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(delay, self._expired))

    def _expired(self) -> None:
        startup.spawn(self.end_session(codes.REVOKED, "token expired"))

    async def _heartbeat(self) -> None:
        interval = settings.REALTIME_HEARTBEAT_INTERVAL
        idle = self.idle_timeout()
        while not self.closing:
            await asyncio.sleep(min(interval, idle) if idle else interval)
            if idle and time.monotonic() - self.last_seen > idle:
                await self.end_session(codes.IDLE, "idle timeout")
                return
            with contextlib.suppress(Exception):
                await self.session_heartbeat()
            # Keeps this socket's place under the connection limits from lapsing.
            with contextlib.suppress(Exception):
                await connection_limiter().refresh(self.principal, self.session_id)

    # --- Control ----------------------------------------------------------------------------

    async def recheck(self) -> None:
        if self.closing or not self.opened:
            return
        try:
            await self.session_recheck()
        except Refusal as refusal:
            await self.end_session(refusal.code, refusal.reason)
        except Exception as exc:
            logger.warning("%s session: policy re-check failed: %s", self.endpoint, exc)
            await self._end_on_error(exc, "re-checking")


# --- This process's sessions -------------------------------------------------------------


class LiveSession(Protocol):
    """What revocation, policy re-checks and shutdown need of a live session: a socket, or an
    HTTP event stream (webconnect/realtime/sse.py), so access ends live on every transport."""

    principal: Principal

    async def end_session(self, code: int, reason: str) -> None: ...

    async def recheck(self) -> None: ...


class Registry:
    def __init__(self) -> None:
        self.sessions: weakref.WeakSet[LiveSession] = weakref.WeakSet()
        self.by_user: dict[int, weakref.WeakSet[LiveSession]] = {}
        self.by_token: dict[int, weakref.WeakSet[LiveSession]] = {}

    def add(self, session: LiveSession) -> None:
        self.sessions.add(session)
        auth = session.principal.auth
        if session.principal.user_id is not None:
            self.by_user.setdefault(session.principal.user_id, weakref.WeakSet()).add(session)
        if auth.token_id is not None:
            self.by_token.setdefault(auth.token_id, weakref.WeakSet()).add(session)

    def discard(self, session: LiveSession) -> None:
        self.sessions.discard(session)
        for index, key in (
            (self.by_user, session.principal.user_id),
            (self.by_token, session.principal.auth.token_id),
        ):
            if key is None or key not in index:
                continue
            index[key].discard(session)
            if not index[key]:
                del index[key]

    def all(self) -> list[LiveSession]:
        return list(self.sessions)


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Registry] = weakref.WeakKeyDictionary()


def registry() -> Registry:
    loop = asyncio.get_running_loop()
    found = _registries.get(loop)
    if found is None:
        found = _registries[loop] = Registry()
    return found


def live_sessions() -> list[LiveSession]:
    return registry().all()


async def recheck_all_sessions() -> None:
    """Policies changed: every socket of this process re-checks what it holds."""
    for session in live_sessions():
        await session.recheck()


async def close_all_sessions(code: int, reason: str) -> None:
    await asyncio.gather(*(session.end_session(code, reason) for session in live_sessions()), return_exceptions=True)


# --- Control messages (on the bus, handled on this loop) ----------------------------------

ControlHandler = Callable[[dict[str, Any]], Awaitable[None]]
_control_handlers: dict[str, ControlHandler] = {}


def on_control(op: str, handler: ControlHandler) -> None:
    """Apps add control operations (the policies app: "policy")."""
    _control_handlers[op] = handler


def send_control(message: dict[str, Any]) -> None:
    """From sync code (signal receivers, saves): every process handles it on its own loop."""
    try:
        get_bus().publish_threadsafe(CONTROL, message["op"], json.dumps(message).encode())
    except BusUnavailable:
        # The message is lost for other processes; sockets there end at their next
        # policy poll (POLICY_POLL_INTERVAL) or heartbeat at the latest.
        logger.exception("could not send control message %s", message.get("op"))


async def _on_control(key: str, data: bytes) -> None:
    message = json.loads(data)
    handler = _control_handlers.get(message.get("op"))
    if handler is not None:
        await handler(message)


async def _revoke(message: dict[str, Any]) -> None:
    """Sign-out or token revocation: close the sockets opened with that credential."""
    reg = registry()
    methods = message.get("methods")
    # First, so no handshake from here on opens a socket with a remembered token.
    if message.get("token_id") is not None:
        forget_access_tokens(token_id=int(message["token_id"]))
        targets = list(reg.by_token.get(int(message["token_id"]), ()))
    elif message.get("user_id") is not None:
        if not methods or "bearer" in methods:
            forget_access_tokens(user_id=int(message["user_id"]))
        targets = list(reg.by_user.get(int(message["user_id"]), ()))
    else:
        return
    reason = str(message.get("reason", "revoked"))
    for session in targets:
        if methods and session.principal.auth.method not in methods:
            continue
        await session.end_session(codes.REVOKED, reason)


def revoke_user_sessions(user_id: int, *, methods: list[str] | None, reason: str) -> None:
    send_control({"op": "revoke", "user_id": user_id, "methods": methods, "reason": reason})


def revoke_token_sessions(token_id: int, *, reason: str) -> None:
    send_control({"op": "revoke", "token_id": token_id, "reason": reason})


async def _close_for_shutdown() -> None:
    await close_all_sessions(codes.GOING_AWAY, "server restarting: reconnect")


on_control("revoke", _revoke)
get_bus().on(CONTROL, _on_control)
startup.on_shutdown("sessions", _close_for_shutdown, startup.CLOSE)
