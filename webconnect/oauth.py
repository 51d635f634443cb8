"""django-oauth-toolkit customisations: who a client-credentials token acts for, audit."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from django.conf import settings
from jwcrypto import jwk
from oauth2_provider.models import get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator as BaseValidator
from oauth2_provider.settings import oauth2_settings

from webconnect.audit import audit_record
from webconnect.identity import stored_access_token, token_checksum


class OAuth2Validator(BaseValidator):  # type: ignore[misc]
    # OIDC claims; the username is what users see everywhere else.
    oidc_claim_scope = None

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "preferred_username": user.get_username(),
            "email": user.email,
            "name": user.get_full_name() or user.get_username(),
            # The user's group names, so a site signing in with webconnect can mirror them (and programs can read them).
            "groups": sorted(user.groups.values_list("name", flat=True)),
        }

    def _create_access_token(self, expires: Any, request: Any, token: Any, source_refresh_token: Any = None) -> Any:
        # A client-credentials token acts for the user who owns the application
        # (its service account); DOT would otherwise leave it without a user and
        # every authorization check would treat it as anonymous.
        if request.grant_type == "client_credentials":
            request.user = request.client.user
        return super()._create_access_token(expires, request, token, source_refresh_token)

    def revoke_token(self, token: str, token_type_hint: str | None, request: Any, *args: Any, **kwargs: Any) -> None:
        owner = _token_owner(token)
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)
        if owner is not None:
            user, kind, token_id = owner
            audit_record(
                action="token.revoked",
                actor=user,
                target=f"{kind}:{token_id}",
                details={"client_id": request.client_id or ""},
            )


def _token_owner(token: str) -> tuple[Any, str, int] | None:
    access = stored_access_token(token)
    if access is not None:
        return access.user, "access_token", access.pk
    refresh = (
        get_refresh_token_model().objects.filter(token_checksum=token_checksum(token)).select_related("user").first()
    )
    if refresh is not None:
        return refresh.user, "refresh_token", refresh.pk
    return None


def jwt_access_token(request: Any) -> str:
    """An access token as a signed JWT (RFC 9068), when OAUTH2_JWT_ACCESS_TOKENS is on.

    Another service can then check it with this server's JWKS alone (signature,
    issuer, audience, expiry), as webconnect itself does for its identity
    provider's tokens (OIDC_ACCEPT_BEARER). It is stored (hashed) like any token,
    so revocation and introspection work here as before.
    """
    # As OAuth2Validator._create_access_token: a client-credentials token acts for the application's owner.
    user = request.client.user if request.grant_type == "client_credentials" else request.user
    now = int(time.time())
    claims = {
        "iss": oauth2_settings.oidc_issuer(request),
        "sub": str(user.pk),
        "client_id": request.client_id,
        "aud": [request.client_id, *settings.OAUTH2_ACCESS_TOKEN_AUDIENCE],
        "scope": " ".join(request.scopes or ()),
        "iat": now,
        "exp": now + oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS,
        "jti": uuid.uuid4().hex,
    }
    pem = oauth2_settings.OIDC_RSA_PRIVATE_KEY
    kid = jwk.JWK.from_pem(pem.encode()).thumbprint()  # the kid the JWKS endpoint publishes for this key
    return jwt.encode(claims, pem, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})
