"""Bearer tokens from the OpenID provider opening /ws/ (OIDC_ACCEPT_BEARER).

A token is accepted only as a JWT signed by a key in the provider's JWKS (read
with PyJWKClient, cached), for the configured issuer and audience, unexpired,
and for a subject that has signed in here (its account and groups are known).
Its `scope` claim maps to this server's scopes by name; any other scope is
ignored. A refused token is logged with the reason only, never its contents.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import jwt
from channels.db import database_sync_to_async
from django.conf import settings

from federation.models import ExternalIdentity
from federation.oidc import ProviderUnavailable, discovery, provider_name
from webconnect.identity import ConnectionAuth

logger = logging.getLogger(__name__)

JWKS_CACHE_SECONDS = 300
_jwks: dict[str, jwt.PyJWKClient] = {}


def _jwks_client() -> jwt.PyJWKClient:
    uri = str(discovery()["jwks_uri"])
    client = _jwks.get(uri)
    if client is None:
        _jwks.clear()
        # Keys are cached; an unknown kid (a rotated key) refetches the set, at most once per token.
        client = _jwks[uri] = jwt.PyJWKClient(
            uri, cache_jwk_set=True, lifespan=JWKS_CACHE_SECONDS, timeout=settings.OIDC_TIMEOUT
        )
    return client


def verify_bearer(raw: str, client_ip: str | None) -> tuple[Any, ConnectionAuth] | None:
    if raw.count(".") != 2:
        return None  # not a JWT: not the provider's
    try:
        key = _jwks_client().get_signing_key_from_jwt(raw)
        claims = jwt.decode(
            raw,
            key.key,
            algorithms=[settings.OIDC_RP_SIGN_ALGO],
            audience=settings.OIDC_BEARER_AUDIENCE,
            issuer=settings.OIDC_ISSUER,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except (jwt.PyJWTError, ProviderUnavailable) as exc:
        logger.info("provider bearer token refused: %s", type(exc).__name__)
        return None
    identity = (
        ExternalIdentity.objects.select_related("user")
        .filter(provider=provider_name(), subject=str(claims["sub"]))
        .first()
    )
    if identity is None or not identity.user.is_active:
        logger.info("provider bearer token refused: no active account for its subject")
        return None
    known = set(settings.OAUTH2_SCOPES)
    scopes = frozenset(scope for scope in str(claims.get("scope", "")).split() if scope in known)
    auth = ConnectionAuth(
        method="bearer",
        scopes=scopes,
        client_ip=client_ip,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
        extra={"issuer": settings.OIDC_ISSUER, "kind": "provider-jwt"},
    )
    return identity.user, auth


async def averify_bearer(raw: str, client_ip: str | None) -> tuple[Any, ConnectionAuth] | None:
    # JWKS fetches and the account lookup block: off the event loop.
    result: tuple[Any, ConnectionAuth] | None = await database_sync_to_async(verify_bearer, thread_sensitive=False)(
        raw, client_ip
    )
    return result
