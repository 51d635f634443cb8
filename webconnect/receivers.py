"""Signal receivers that write the audit trail for Django and DOT events."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest
from oauth2_provider.signals import app_authorized

from webconnect.audit import audit_record
from webconnect.identity import request_client_ip
from webconnect.models import AuditEvent


def _ip(request: HttpRequest | None) -> str | None:
    return request_client_ip(request) if request is not None else None


@receiver(user_logged_in)
def audit_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    audit_record(action="auth.login", actor=user, target=f"user:{user.pk}", client_ip=_ip(request))


@receiver(user_login_failed)
def audit_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in `credentials`; only the name is kept.
    username = str(credentials.get("username", ""))[:150]
    details: dict[str, Any] = {"reason": "invalid credentials"}
    # An identity provider's backend (federation/) says why it refused: its reason, never the token or password.
    refusal = getattr(request, "sign_in_refusal", None) or {}
    if refusal.get("reason"):
        details = {"reason": refusal["reason"], "provider": refusal.get("provider", "")}
    audit_record(
        action="auth.login",
        outcome=AuditEvent.Outcome.FAILURE,
        actor_name=username,
        target=f"username:{username}",
        client_ip=_ip(request),
        details=details,
    )


@receiver(user_logged_out)
def audit_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:
        audit_record(action="auth.logout", actor=user, target=f"user:{user.pk}", client_ip=_ip(request))


@receiver(app_authorized)
def audit_token_issued(sender: Any, request: HttpRequest, token: Any, **kwargs: Any) -> None:
    audit_record(
        action="token.issued",
        actor=token.user,
        target=f"access_token:{token.pk}",
        client_ip=_ip(request),
        details={"client_id": token.application.client_id if token.application else "", "scope": token.scope},
    )


_ADMIN_ACTIONS = {ADDITION: "admin.add", CHANGE: "admin.change", DELETION: "admin.delete"}


@receiver(post_save, sender=LogEntry)
def audit_admin_change(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if not created:
        return
    model = instance.content_type.model_class() if instance.content_type else None
    label = model._meta.label if model is not None else "unknown"
    audit_record(
        action=_ADMIN_ACTIONS.get(instance.action_flag, "admin.other"),
        actor=instance.user,
        target=f"{label}:{instance.object_id} {instance.object_repr}",
        details={"change": instance.get_change_message()},
    )
