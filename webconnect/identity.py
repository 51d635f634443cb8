"""Who is calling: the one place that says so, for requests, sockets and tasks.

Defines `Principal` (a user and how they authenticated), `Resource`, the
decision types, and the only functions that build a principal: from an HTTP
request, from an ASGI scope's handshake result, or for a named user (tasks,
the simulator). The client IP (trusting X-Forwarded-For only as far as
TRUSTED_PROXY_COUNT) and the access-token lookup live here too, so a rule
about callers is written once.

This module imports nothing of the project: everything else may import it.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone

# Signed-out callers may at most read channels; whether any channel is readable
# without signing in is the policies' decision (anonymous_read).
ANONYMOUS_SCOPES = frozenset({"realtime:read"})


@dataclass(frozen=True)
class ConnectionAuth:
    """How a caller authenticated: "bearer", "session", "ticket" or "anonymous"."""

    method: str
    scopes: frozenset[str] | None = None  # None: a session, limited only by the user's rights
    token_id: int | None = None
    client_ip: str | None = None
    expires_at: datetime | None = None  # the credential's end (a token's expiry)
    extra: dict[str, Any] = field(default_factory=dict)

    def allows(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user (possibly anonymous) and how they authenticated."""

    user: Any
    auth: ConnectionAuth = field(default_factory=lambda: ConnectionAuth(method="session"))

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user is not None and self.user.is_authenticated)

    @property
    def user_id(self) -> int | None:
        return self.user.pk if self.is_authenticated else None


@dataclass(frozen=True)
class Resource:
    """What is acted on: `type` is Channel, Document, Dashboard or Platform.

    `attrs` carries what the rules need, e.g. for a Channel {"namespace": "chat"},
    for a Document {"owner_id": 3, "editor_ids": [..], "viewer_ids": [..]}.
    """

    type: str
    id: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    policies: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0  # seconds until the action may be retried
    limit: str = ""  # the rule that limited it, e.g. "20/second"


# --- Client address -----------------------------------------------------------------------


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip_from(peer: str | None, forwarded_for: str | None) -> str | None:
    """The client's address, trusting X-Forwarded-For only as far as TRUSTED_PROXY_COUNT.

    Each trusted proxy appends the address it received the request from, so the
    client is the entry TRUSTED_PROXY_COUNT places from the right; anything left
    of it was written by the client and cannot be trusted.
    """
    hops = settings.TRUSTED_PROXY_COUNT
    if hops and forwarded_for:
        entries = [entry for entry in forwarded_for.split(",") if entry.strip()]
        if len(entries) >= hops:
            return _valid_ip(entries[-hops])
    return _valid_ip(peer) if peer else None


def scope_header(scope: dict[str, Any], name: bytes) -> str | None:
    """One header of an ASGI scope, decoded as latin-1 (as HTTP headers are)."""
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def client_ip_from_scope(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    peer = client[0] if client else None
    return client_ip_from(peer, scope_header(scope, b"x-forwarded-for"))


def request_client_ip(request: Any) -> str | None:
    """The client IP of a Django (or DRF) request."""
    meta = getattr(request, "META", None) or request._request.META
    return client_ip_from(meta.get("REMOTE_ADDR"), meta.get("HTTP_X_FORWARDED_FOR"))


# --- Access tokens ------------------------------------------------------------------------


def token_checksum(raw: str) -> str:
    """How django-oauth-toolkit stores a token (hashed tokens, RFC 9700 settings)."""
    return hashlib.sha256(raw.strip().encode()).hexdigest()


def stored_access_token(raw: str) -> Any:
    """The stored access token row for a raw bearer value, whatever its state, or None."""
    from oauth2_provider.models import get_access_token_model  # the model registry is not ready at import

    return get_access_token_model().objects.select_related("user").filter(token_checksum=token_checksum(raw)).first()


def access_token_lookup(raw: str, *, include_expired: bool = False) -> Any:
    """The access token a caller may act with, or None (unknown, expired, inactive user)."""
    token = stored_access_token(raw)
    if token is None or token.user is None or not token.user.is_active:
        return None
    if not include_expired and token.expires <= timezone.now():
        return None
    return token


# --- Credentials at the WebSocket handshake ------------------------------------------------
#
# A reconnect storm checks thousands of credentials a second. Lookups that arrive
# on the event loop together share one query in one worker thread (not a thread
# hop and a query per socket; Channels' session middleware even queues them all
# on one shared thread). A token found is also remembered for
# AUTH_TOKEN_CACHE_SECONDS, so a client that reconnects is not looked up again.
# Revocation and sign-out reach every process as a control message that forgets
# the token (or the user's tokens) here before it closes their sockets; the short
# lifetime bounds what that message cannot cover (a user deactivated, a lost
# control message). A result read while a revocation was handled is used once but
# never remembered. Expiry is checked on every use; unknown tokens are never
# remembered. Sessions are not cached (signing out deletes the row: the next
# handshake must see that).

_BATCH_MAX = 200  # credentials per query


class _Coalescer:
    """Concurrent lookups of `load(keys) -> {key: value}` on one loop, batched into as few calls as the load allows."""

    def __init__(self, load: Callable[[list[str]], dict[str, Any]]) -> None:
        self.load = load
        self.waiting: dict[str, list[asyncio.Future[Any]]] = {}
        self.flushing = False
        self.on_loaded: Callable[[dict[str, Any], int], None] | None = None
        self.generation = 0  # bumped by every forget: results read across one are not cached

    async def get(self, key: str) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.waiting.setdefault(key, []).append(future)
        if not self.flushing:
            self.flushing = True
            # call_soon: handshakes already runnable in this loop iteration join the first batch.
            loop.call_soon(lambda: _keep_running(self._flush()))
        return await future

    async def _flush(self) -> None:
        from channels.db import database_sync_to_async

        try:
            # Lookups that arrive while a query runs wait for the next one: batches grow with the load.
            while self.waiting:
                keys = list(self.waiting)[:_BATCH_MAX]
                waiters = {key: self.waiting.pop(key) for key in keys}
                generation = self.generation
                try:
                    found = await database_sync_to_async(self.load, thread_sensitive=False)(keys)
                except Exception as exc:
                    for futures in waiters.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                if self.on_loaded is not None:
                    self.on_loaded(found, generation)
                for key, futures in waiters.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(found.get(key))
        finally:
            self.flushing = False


_pending_flushes: set[asyncio.Task[None]] = set()


def _keep_running(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _pending_flushes.add(task)  # keep a reference until it is done
    task.add_done_callback(_pending_flushes.discard)


@dataclass
class _HandshakeLookups:
    tokens: _Coalescer
    sessions: _Coalescer
    token_cache: dict[str, tuple[float, Any]] = field(default_factory=dict)

    def remember(self, found: dict[str, Any], generation: int) -> None:
        if generation != self.tokens.generation or not settings.AUTH_TOKEN_CACHE_SECONDS:
            return
        now = time.monotonic()
        for checksum, token in found.items():
            if len(self.token_cache) >= 10_000:
                self.token_cache.pop(next(iter(self.token_cache)))
            self.token_cache[checksum] = (now, token)

    def forget(self, *, token_id: int | None, user_id: int | None) -> None:
        self.tokens.generation += 1
        for key, (_at, token) in list(self.token_cache.items()):
            if token.pk == token_id or (user_id is not None and token.user_id == user_id):
                del self.token_cache[key]


_lookups: dict[asyncio.AbstractEventLoop, _HandshakeLookups] = {}


def _handshake_lookups() -> _HandshakeLookups:
    loop = asyncio.get_running_loop()
    found = _lookups.get(loop)
    if found is None:
        for closed in [other for other in _lookups if other.is_closed()]:
            del _lookups[closed]
        # Looked up at call time, so a test can replace them.
        found = _lookups[loop] = _HandshakeLookups(
            _Coalescer(lambda keys: _stored_access_tokens(keys)), _Coalescer(lambda keys: _session_users(keys))
        )
        found.tokens.on_loaded = found.remember
    return found


def forget_access_tokens(*, token_id: int | None = None, user_id: int | None = None) -> None:
    """A token was revoked (or a user signed out): no handshake may be admitted with it from now on."""
    for lookups in list(_lookups.values()):
        lookups.forget(token_id=token_id, user_id=user_id)


def _stored_access_tokens(checksums: list[str]) -> dict[str, Any]:
    from oauth2_provider.models import get_access_token_model

    rows = get_access_token_model().objects.select_related("user").filter(token_checksum__in=checksums)
    return {row.token_checksum: row for row in rows}


def _usable(token: Any) -> Any:
    if token is None or token.user is None or not token.user.is_active or token.expires <= timezone.now():
        return None
    # Each socket gets its own copy: nothing set on one principal's user leaks into another's.
    token = copy.copy(token)
    token.user = copy.copy(token.user)
    return token


async def aaccess_token_lookup(raw: str) -> Any:
    """`access_token_lookup` for the event loop: remembered briefly, batched with concurrent lookups."""
    checksum = token_checksum(raw)
    lookups = _handshake_lookups()
    hit = lookups.token_cache.get(checksum)
    if hit is not None and time.monotonic() - hit[0] < settings.AUTH_TOKEN_CACHE_SECONDS:
        return _usable(hit[1])
    return _usable(await lookups.tokens.get(checksum))


_MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def session_batching_supported() -> bool:
    """Batched session loading reads django.contrib.sessions' table; other engines take Channels' path."""
    return settings.SESSION_ENGINE == "django.contrib.sessions.backends.db"


def _session_users(keys: list[str]) -> dict[str, Any]:
    """The signed-in user of each session key, as django.contrib.auth.get_user() would find it."""
    from importlib import import_module

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
    from django.contrib.sessions.models import Session
    from django.utils.crypto import constant_time_compare

    store = import_module(settings.SESSION_ENGINE).SessionStore()
    model = get_user_model()
    claims: dict[str, tuple[Any, str, str]] = {}
    for row in Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now()):
        data = store.decode(row.session_data)  # tampered or undecodable data decodes to {}
        backend = data.get(BACKEND_SESSION_KEY)
        if backend not in settings.AUTHENTICATION_BACKENDS:
            continue
        try:
            user_id = model._meta.pk.to_python(data[SESSION_KEY])
        except Exception:  # noqa: S112 - what get_user() does too: no user
            continue
        claims[row.session_key] = (user_id, backend, str(data.get(HASH_SESSION_KEY) or ""))
    ids = {user_id for user_id, backend, _ in claims.values() if backend == _MODEL_BACKEND}
    users = {user.pk: user for user in model._default_manager.filter(pk__in=ids, is_active=True)}
    found: dict[str, Any] = {}
    for key, (user_id, backend, claimed_hash) in claims.items():
        user = users.get(user_id) if backend == _MODEL_BACKEND else load_backend(backend).get_user(user_id)
        if user is None:
            continue
        if hasattr(user, "get_session_auth_hash"):
            hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
            if not claimed_hash or not any(constant_time_compare(claimed_hash, known) for known in hashes):
                continue  # the password changed since: signed out
        found[key] = copy.copy(user) if backend == _MODEL_BACKEND else user
    return found


async def asession_user(session_key: str | None) -> Any:
    """The user signed in with this session key (AnonymousUser if none), batched with concurrent lookups."""
    if not session_key:
        return AnonymousUser()
    user = await _handshake_lookups().sessions.get(session_key)
    return user if user is not None else AnonymousUser()


def token_auth(token: Any, client_ip: str | None) -> ConnectionAuth:
    return ConnectionAuth(
        method="bearer",
        scopes=frozenset(token.scope.split()),
        token_id=token.pk,
        client_ip=client_ip,
        expires_at=token.expires,
    )


# --- Bearer tokens this server did not issue -------------------------------------------------
#
# An identity provider's JWTs (federation/, OIDC_ACCEPT_BEARER) are checked by verifiers that
# apps register at start-up; each answers (user, ConnectionAuth) for a token it accepts, or None.

BearerVerifier = Callable[[str, str | None], Awaitable[tuple[Any, ConnectionAuth] | None]]
_bearer_verifiers: list[BearerVerifier] = []


def register_bearer_verifier(verifier: BearerVerifier) -> None:
    if verifier not in _bearer_verifiers:
        _bearer_verifiers.append(verifier)


async def aexternal_bearer(raw: str, client_ip: str | None) -> tuple[Any, ConnectionAuth] | None:
    """Who a bearer token unknown to this server speaks for, if a registered verifier accepts it."""
    for verifier in _bearer_verifiers:
        found = await verifier(raw, client_ip)
        if found is not None:
            return found
    return None


# --- Building a principal -----------------------------------------------------------------


def principal_from_request(request: Any) -> Principal:
    """The caller of an HTTP request: a DRF request's bearer token, or the browser session."""
    client_ip = request_client_ip(request)
    token = getattr(request, "auth", None)
    if token is not None and hasattr(token, "token_checksum"):
        return Principal(request.user, token_auth(token, client_ip))
    user = getattr(request, "user", None) or AnonymousUser()
    if not user.is_authenticated:
        return Principal(user, ConnectionAuth(method="anonymous", scopes=ANONYMOUS_SCOPES, client_ip=client_ip))
    return Principal(user, ConnectionAuth(method="session", client_ip=client_ip))


def principal_from_scope(scope: dict[str, Any]) -> Principal:
    """The caller of a WebSocket, as the handshake authenticated it (scope["user"], scope["auth"])."""
    auth = scope.get("auth")
    if auth is None:
        auth = ConnectionAuth(method="anonymous", scopes=ANONYMOUS_SCOPES, client_ip=client_ip_from_scope(scope))
    return Principal(scope.get("user") or AnonymousUser(), auth)


def principal_for_user(user: Any, *, client_ip: str | None = None, auth: ConnectionAuth | None = None) -> Principal:
    """A principal for a user acting directly (a task, the simulator); anonymous when user is None."""
    if auth is not None:
        return Principal(user, auth)
    if user is None or not user.is_authenticated:
        return Principal(
            AnonymousUser(), ConnectionAuth(method="anonymous", scopes=ANONYMOUS_SCOPES, client_ip=client_ip)
        )
    return Principal(user, ConnectionAuth(method="session", client_ip=client_ip))
