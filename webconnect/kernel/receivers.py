"""Close sockets (every endpoint, every process) when the credential they were opened with goes away."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from oauth2_provider.models import get_access_token_model

from webconnect.kernel.sessions import revoke_token_sessions, revoke_user_sessions


@receiver(user_logged_out)
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        # Browser sockets (session cookie, or a ticket minted from it); a program's
        # bearer-token sockets are closed by revoking the token.
        revoke_user_sessions(user.pk, methods=["session", "ticket"], reason="signed out")


@receiver(post_delete, sender=get_access_token_model())
def close_sockets_on_token_revoked(sender: Any, instance: Any, **kwargs: Any) -> None:
    token_id = instance.pk
    transaction.on_commit(lambda: revoke_token_sessions(token_id, reason="token revoked"))
