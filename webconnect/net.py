"""Client addresses and origins, the same way for HTTP requests and ASGI scopes."""

from __future__ import annotations

import ipaddress
from typing import Any

from django.conf import settings


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
