"""OpenID Connect sign-in (authorization code with PKCE) with mozilla-django-oidc.

mozilla-django-oidc does the code flow, the state, nonce and PKCE bookkeeping
and the token exchange. Around it: the provider's endpoints come from its
discovery document (OIDC_ISSUER), the ID token's issuer and audience are
checked too (the library checks only the signature and nonce), the account is
found by (issuer, `sub`) and never by email, groups from OIDC_GROUPS_CLAIM are
mirrored on every sign-in, and a refused sign-in is audited with its reason and
told to the user without any token content.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import SuspiciousOperation
from django.shortcuts import resolve_url
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings

from federation.services import (
    SignInRefused,
    external_login_record,
    external_user_link,
    refuse,
    user_groups_sync,
)

logger = logging.getLogger(__name__)

_ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
DISCOVERY_TTL_SECONDS = 3600
_discovered: dict[str, Any] = {}
_discovered_at = 0.0


class ProviderUnavailable(Exception):
    """The provider's discovery document could not be read or is not the configured issuer's."""


def provider_name() -> str:
    return f"oidc:{settings.OIDC_ISSUER}"


def discovery() -> dict[str, Any]:
    """The provider's metadata (/.well-known/openid-configuration), fetched once an hour."""
    global _discovered_at
    if _discovered and time.monotonic() - _discovered_at < DISCOVERY_TTL_SECONDS:
        return _discovered
    url = f"{settings.OIDC_ISSUER}/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderUnavailable(f"discovery failed ({type(exc).__name__})") from exc
    # OpenID Connect Discovery 1.0 §4.3: the document must name the issuer it was fetched for.
    if str(document.get("issuer", "")).rstrip("/") != settings.OIDC_ISSUER:
        raise ProviderUnavailable("discovery names another issuer")
    missing = [key for key in _ENDPOINTS.values() if not document.get(key)]
    if missing:
        raise ProviderUnavailable(f"discovery lacks {', '.join(missing)}")
    _discovered.clear()
    _discovered.update(document)
    _discovered_at = time.monotonic()
    return _discovered


def forget_discovery() -> None:
    _discovered.clear()


def oidc_setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, with the provider's endpoints from discovery."""
    if attr in _ENDPOINTS:
        return discovery()[_ENDPOINTS[attr]]
    return import_from_settings(attr, *default)


def end_session_url(request: Any, id_token: str) -> str:
    """Where sign-out sends the browser so the provider's session ends too, or "" if it offers no such thing."""
    try:
        endpoint = discovery().get("end_session_endpoint")
    except ProviderUnavailable:
        return ""
    if not endpoint:
        return ""
    params = {
        "id_token_hint": id_token,
        "client_id": settings.OIDC_RP_CLIENT_ID,
        "post_logout_redirect_uri": request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL)),
    }
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"


class OIDCBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    get_settings = staticmethod(oidc_setting)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Built on every authenticate(); before discovery so a password sign-in never waits for the provider.
        self._ready = False
        self.UserModel = get_user_model()  # what get_user() reads on every request of the session

    def _setup(self) -> None:
        if not self._ready:
            super().__init__()
            self._ready = True

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        if request is None or "code_verifier" not in kwargs or not settings.OIDC_ISSUER:
            return None  # not an OpenID Connect callback
        try:
            self._setup()
            return super().authenticate(request, **kwargs)
        except SignInRefused as exc:
            refuse(request, provider=provider_name(), reason=exc.reason, message=exc.message)
        except ProviderUnavailable as exc:
            refuse(request, provider=provider_name(), reason=f"provider unreachable: {exc}")
        except requests.HTTPError as exc:
            # The token endpoint's body may echo the code: only the status is kept.
            status = exc.response.status_code if exc.response is not None else "?"
            refuse(request, provider=provider_name(), reason=f"the provider refused the code (HTTP {status})")
        except requests.RequestException as exc:
            refuse(request, provider=provider_name(), reason=f"provider unreachable ({type(exc).__name__})")
        except SuspiciousOperation as exc:
            refuse(request, provider=provider_name(), reason=f"ID token refused: {exc}")
        return None

    def _verify_jws(self, payload: str, key: Any) -> dict[str, Any]:
        """The ID token's signature, algorithm, issuer, audience and expiry (the library checks no iss or aud)."""
        try:
            alg = jwt.get_unverified_header(payload).get("alg")
        except jwt.InvalidTokenError:
            raise SuspiciousOperation("not a JWT") from None
        if alg != self.OIDC_RP_SIGN_ALGO:
            raise SuspiciousOperation(f"algorithm {alg!r} is not {self.OIDC_RP_SIGN_ALGO}")
        try:
            claims: dict[str, Any] = jwt.decode(
                payload,
                key,
                algorithms=[alg],
                audience=self.OIDC_RP_CLIENT_ID,
                issuer=settings.OIDC_ISSUER,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise SuspiciousOperation(type(exc).__name__) from None
        return claims

    def get_or_create_user(self, access_token: str, id_token: str, payload: dict[str, Any]) -> Any:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        subject = str(payload.get("sub", ""))
        # OpenID Connect Core §5.3.2: userinfo for another subject must not be used.
        if str(userinfo.get("sub", "")) != subject:
            raise SignInRefused("userinfo is for another subject")
        claims = {**payload, **userinfo}
        user, created = external_user_link(
            provider=provider_name(),
            subject=subject,
            username=str(claims.get("preferred_username") or claims.get("nickname") or subject),
            email=str(claims.get("email") or "") if claims.get("email_verified", True) else "",
            display_name=str(claims.get("name") or ""),
        )
        if not user.is_active:
            raise SignInRefused("account deactivated here", "This account is deactivated here.")
        granted: list[str] = []
        removed: list[str] = []
        raw_groups = claims.get(settings.OIDC_GROUPS_CLAIM)
        if raw_groups is not None:
            if not isinstance(raw_groups, list):
                raise SignInRefused(f"the {settings.OIDC_GROUPS_CLAIM} claim is not a list")
            granted, removed = user_groups_sync(user=user, names=raw_groups)
        external_login_record(
            request=self.request,
            user=user,
            provider=provider_name(),
            subject=subject,
            granted=granted,
            removed=removed,
            created=created,
        )
        sign_out = end_session_url(self.request, id_token)
        if sign_out:
            self.request.session["sign_out_redirect"] = sign_out  # read by webconnect.views.LogoutView
        return user
