"""WebSocket handshake authentication: who is connecting, how, and from which origin.

Three ways in, decided in this order:
- `Authorization: Bearer <token>` (programs): an OAuth2 access token; cookies
  are ignored and no Origin is needed, because nothing ambient authenticates it.
- `?ticket=` (issued by the ticket endpoint): handled by the real-time layer.
- the session cookie (browsers): only when the Origin is allowed, because a
  browser attaches the cookie to a WebSocket opened from any site.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from channels.auth import AuthMiddlewareStack
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.cookie import parse_cookie

from webconnect.identity import (
    ANONYMOUS_SCOPES,
    ConnectionAuth,
    aaccess_token_lookup,
    aexternal_bearer,
    asession_user,
    client_ip_from_scope,
    scope_header,
    session_batching_supported,
    token_auth,
)
from webconnect.kernel import codes
from webconnect.kernel.outages import is_unavailable
from webconnect.realtime.tickets import aticket_consume

ASGIApp = Any
logger = logging.getLogger(__name__)


def _normalise_origin(origin: str) -> str | None:
    parts = urlsplit(origin.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    default_port = 443 if parts.scheme == "https" else 80
    port = parts.port or default_port
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + ("" if port == default_port else f":{port}")


def _request_scheme(scope: dict[str, Any]) -> str:
    if scope.get("scheme") in {"wss", "https"}:
        return "https"
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header and scope_header(scope, b"x-forwarded-proto") == "https":
        return "https"
    return "http"


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Full-origin comparison (scheme, host and port) for cookie-authenticated browsers."""
    origin = scope_header(scope, b"origin")
    if origin is None:
        return False
    normalised = _normalise_origin(origin)
    if normalised is None:
        return False
    allowed = {_normalise_origin(o) for o in settings.WEBSOCKET_ALLOWED_ORIGINS}
    allowed |= {_normalise_origin(o) for o in settings.CSRF_TRUSTED_ORIGINS}
    if normalised in allowed:
        return True
    host = scope_header(scope, b"host")
    return host is not None and normalised == _normalise_origin(f"{_request_scheme(scope)}://{host}")


def bearer_token(scope: dict[str, Any]) -> str | None:
    header = scope_header(scope, b"authorization")
    if header and header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return None


def query_ticket(scope: dict[str, Any]) -> str | None:
    values = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1")).get("ticket")
    return values[0] if values else None


async def _reject(send: Any) -> None:
    # Closing before accept makes the server answer the upgrade with HTTP 403.
    await send({"type": "websocket.close", "code": 4403})


async def _unavailable(receive: Any, send: Any, exc: BaseException) -> None:
    # The credential could not be checked (storage outage): not a refusal, and no
    # HTTP 500 either. Open and close with UNAVAILABLE, which clients retry.
    logger.warning("WebSocket handshake: storage unavailable: %s", exc)
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": codes.UNAVAILABLE})


class HandshakeAuthMiddleware:
    """Sets scope["user"] and scope["auth"] for every WebSocket connection, or refuses it."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner
        self.session_stack = AuthMiddlewareStack(inner)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        client_ip = client_ip_from_scope(scope)
        raw_token = bearer_token(scope)
        if raw_token is not None:
            try:
                token = await aaccess_token_lookup(raw_token)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                return await _unavailable(receive, send, exc)
            if token is None:
                found = await aexternal_bearer(raw_token, client_ip)  # an identity provider's token?
                if found is None:
                    return await _reject(send)
                scope = dict(scope, user=found[0], auth=found[1])
            else:
                scope = dict(scope, user=token.user, auth=token_auth(token, client_ip))
            # Cookies are dropped so nothing downstream can mix the two identities.
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
            return await self.inner(scope, receive, send)
        ticket = query_ticket(scope)
        if ticket is not None:
            # Single use, short-lived and bound to the user it was issued to; like a
            # bearer token it is not ambient, so no Origin is needed and cookies are dropped.
            try:
                found = await aticket_consume(ticket, client_ip=client_ip)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                return await _unavailable(receive, send, exc)
            if found is None:
                return await _reject(send)
            user, auth = found
            scope = dict(scope, user=user, auth=auth)
            scope["headers"] = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
            return await self.inner(scope, receive, send)
        cookies = scope_header(scope, b"cookie")
        if cookies is not None:
            if not origin_allowed(scope):
                return await _reject(send)
            scope = dict(scope, auth=ConnectionAuth(method="session", client_ip=client_ip))
            if not session_batching_supported():
                return await self.session_stack(scope, receive, send)
            try:
                user = await asession_user(parse_cookie(cookies).get(settings.SESSION_COOKIE_NAME))
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                return await _unavailable(receive, send, exc)
            return await self.inner(dict(scope, user=user), receive, send)
        scope = dict(
            scope,
            user=AnonymousUser(),
            auth=ConnectionAuth(method="anonymous", scopes=ANONYMOUS_SCOPES, client_ip=client_ip),
        )
        return await self.inner(scope, receive, send)
