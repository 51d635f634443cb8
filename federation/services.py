"""Accounts and groups from an identity provider: link, mirror, audit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from federation.models import ExternalIdentity
from webconnect.audit import audit_record
from webconnect.identity import request_client_ip
from webconnect.models import AuditEvent

REFUSAL_ATTR = "sign_in_refusal"  # read by webconnect.forms and webconnect.receivers


class SignInRefused(Exception):
    """A provider answered, but this sign-in is refused: `message` is for the user, `reason` for the audit."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message


def refuse(request: HttpRequest | None, *, provider: str, reason: str, message: str = "", subject: str = "") -> None:
    """Tell the sign-in form (and its audit event) why a provider refused this attempt.

    `message` replaces the form's generic error when set; wrong passwords and
    unknown users keep the generic one, so the form does not say which names exist.
    """
    if request is not None:
        setattr(request, REFUSAL_ATTR, {"provider": provider, "reason": reason, "message": message, "subject": subject})


def external_refusal_record(
    *, request: HttpRequest | None, provider: str, reason: str, subject: str = "", username: str = ""
) -> None:
    """An external sign-in that never reached the form (an OIDC callback): audited here."""
    audit_record(
        action="auth.login",
        outcome=AuditEvent.Outcome.FAILURE,
        actor_name=username[:150],
        target=f"{provider}:{subject}" if subject else provider,
        client_ip=request_client_ip(request) if request is not None else None,
        details={"provider": provider, "subject": subject, "reason": reason},
    )


def group_names(user: Any) -> set[str]:
    return set(user.groups.values_list("name", flat=True)) if user is not None and user.pk else set()


@transaction.atomic
def user_groups_sync(*, user: Any, names: Iterable[str]) -> tuple[list[str], list[str]]:
    """Make the user's groups exactly `names` (the provider is the source of truth); (granted, removed)."""
    wanted = {name.strip()[:150] for name in names if isinstance(name, str) and name.strip()}
    current = group_names(user)
    granted, removed = sorted(wanted - current), sorted(current - wanted)
    if removed:
        user.groups.remove(*Group.objects.filter(name__in=removed))
    if granted:
        user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in granted))
    return granted, removed


@transaction.atomic
def external_user_link(
    *, provider: str, subject: str, username: str, email: str = "", display_name: str = ""
) -> tuple[Any, bool]:
    """The account linked to (provider, subject), created on first sign-in; (user, created).

    A new account takes `username` when it is free, else `username-2`, ...: an
    existing local account is never taken over because a provider uses its name.
    """
    identity = ExternalIdentity.objects.select_related("user").filter(provider=provider, subject=subject).first()
    created = identity is None
    if identity is None:
        model = get_user_model()
        base = (username or subject)[:140]
        candidate, n = base, 1
        while model._default_manager.filter(username__iexact=candidate).exists():
            n += 1
            candidate = f"{base}-{n}"
        user = model(username=candidate)
        user.set_unusable_password()  # the provider holds the credentials
        user.save()
        identity = ExternalIdentity.objects.create(user=user, provider=provider, subject=subject)
    user = identity.user
    changed = False
    if email and user.email != email:
        user.email, changed = email[:254], True
    if display_name and user.first_name != display_name[:150]:
        user.first_name, user.last_name, changed = display_name[:150], "", True
    if changed:
        user.save(update_fields=["email", "first_name", "last_name"])
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    return user, created


def external_login_record(
    *,
    request: HttpRequest | None,
    user: Any,
    provider: str,
    subject: str,
    granted: list[str],
    removed: list[str],
    created: bool,
) -> None:
    audit_record(
        action="auth.external_login",
        actor=user,
        target=f"user:{user.pk}",
        client_ip=request_client_ip(request) if request is not None else None,
        details={
            "provider": provider,
            "subject": subject,
            "groups_granted": granted,
            "groups_removed": removed,
            "account_created": created,
        },
    )
