from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from federation.oidc import ProviderUnavailable, oidc_setting, provider_name
from federation.services import REFUSAL_ATTR, external_refusal_record


def _require_oidc() -> None:
    if not settings.OIDC_ISSUER:
        raise Http404("OpenID Connect sign-in is not configured (OIDC_ISSUER)")


def _failed(request: HttpRequest, reason: str, *, audit: bool = True) -> HttpResponse:
    """Back to the sign-in page, saying that (and, when it helps, why) the provider sign-in failed."""
    if audit:
        external_refusal_record(request=request, provider=provider_name(), reason=reason)
    messages.error(request, f"Signing in with {settings.OIDC_PROVIDER_NAME} did not work: {reason}.")
    return HttpResponseRedirect(resolve_url("login"))


class OIDCSignInView(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """GET /oidc/authenticate/: off to the provider (state, nonce, S256 PKCE)."""

    get_settings = staticmethod(oidc_setting)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        _require_oidc()
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        return response

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The provider's endpoints are read on GET, so an unreachable provider is a message, not a 500.
        super(OIDCAuthenticationRequestView, self).__init__(*args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            self.OIDC_OP_AUTH_ENDPOINT = self.get_settings("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except ProviderUnavailable as exc:
            return _failed(request, f"the provider cannot be reached ({exc})")
        self.OIDC_RP_CLIENT_ID = self.get_settings("OIDC_RP_CLIENT_ID")
        response: HttpResponse = super().get(request)
        return response


class OIDCCallbackView(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    """GET /oidc/callback/: the provider's answer, exchanged for tokens; the account signed in or a reason shown."""

    get_settings = staticmethod(oidc_setting)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        _require_oidc()
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.GET.get("error"):
            # The provider's own error code only (its description is free text from outside).
            code = "".join(ch for ch in request.GET["error"][:64] if ch.isalnum() or ch in "_-")
            super().get(request)  # drops the state, signs out
            return _failed(request, f"the provider answered {code}")
        try:
            response: HttpResponse = super().get(request)
        except SuspiciousOperation:
            return _failed(request, "this sign-in was not started here (unknown state); start again")
        if getattr(self, "user", None) is not None and self.user.is_active and request.user.is_authenticated:
            return response
        refusal = getattr(request, REFUSAL_ATTR, None) or {}
        if refusal.get("reason"):
            # Already audited with this reason when authentication failed (webconnect.receivers).
            return _failed(request, refusal.get("message") or refusal["reason"], audit=False)
        return _failed(request, "the sign-in expired or was already used; start again")
