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

import hashlib
import ipaddress
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


def token_auth(token: Any, client_ip: str | None) -> ConnectionAuth:
    return ConnectionAuth(
        method="bearer",
        scopes=frozenset(token.scope.split()),
        token_id=token.pk,
        client_ip=client_ip,
        expires_at=token.expires,
    )


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
