from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from webconnect.audit import audit_record
from webconnect.identity import request_client_ip
from webconnect.models import AuditEvent
from webconnect.throttling import login_failed, login_retry_after, login_throttle_reset


class _ThrottledSignIn(AuthenticationForm):
    """Refuses an attempt once this address failed too often (see webconnect/throttling.py).

    The per-account slowdown happens before the form is checked, in the view
    (`webconnect.views.throttled_sign_in`), so the wait holds no worker thread.
    """

    throttled = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].error_messages["required"] = "Enter your username."
        self.fields["password"].error_messages["required"] = "Enter your password."

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        if not username or not self.cleaned_data.get("password"):
            return self.cleaned_data  # the empty field has its error; this is no sign-in attempt
        client_ip = request_client_ip(self.request) if self.request else None
        retry_after = login_retry_after(username=username, client_ip=client_ip)
        if retry_after:
            self.throttled = True
            audit_record(
                action="auth.login",
                outcome=AuditEvent.Outcome.DENIED,
                actor_name=username,
                target=f"username:{username}",
                client_ip=client_ip,
                details={"reason": "throttled", "retry_after": retry_after},
            )
            minutes = max(1, round(retry_after / 60))
            raise forms.ValidationError(
                f"Too many failed sign-in attempts. Try again in about {minutes} minute{'s' if minutes > 1 else ''}.",
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            login_failed(username=username, client_ip=client_ip)
            # An identity provider's backend may say why it refused (a directory that is down, a
            # required group): shown instead of the generic error when the user can act on it.
            refusal = getattr(self.request, "sign_in_refusal", None) or {}
            if refusal.get("message"):
                raise forms.ValidationError(refusal["message"], code="refused") from None
            raise
        login_throttle_reset(username=username, client_ip=client_ip)
        return cleaned


class ThrottledAuthenticationForm(_ThrottledSignIn):
    """The sign-in form of /accounts/login/."""


class ThrottledAdminAuthenticationForm(_ThrottledSignIn, AdminAuthenticationForm):
    """The admin site's sign-in form (staff only), throttled the same way."""
