"""Close real-time sockets when the credential they were opened with goes away."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete
from django.dispatch import receiver
from oauth2_provider.models import get_access_token_model

from webconnect.realtime.consumers import token_group, user_group

logger = logging.getLogger(__name__)


def _group_send(group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, event)
    except Exception:
        # Signing out must not fail because the channel layer is down; the sockets
        # then live until their idle timeout or the next policy check.
        logger.exception("could not notify %s", group)


@receiver(user_logged_out)
def close_sockets_on_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        # Browser sockets (session cookie, or a ticket minted from it); a program's
        # bearer-token sockets are closed by revoking the token.
        _group_send(
            user_group(user.pk), {"type": "realtime.revoke", "methods": ["session", "ticket"], "reason": "signed out"}
        )


@receiver(post_delete, sender=get_access_token_model())
def close_sockets_on_token_revoked(sender: Any, instance: Any, **kwargs: Any) -> None:
    _group_send(token_group(instance.pk), {"type": "realtime.revoke", "reason": "token revoked"})
