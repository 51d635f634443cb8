"""Group membership is part of every decision (User in Role): a change moves the policy version.

Shares follow what they name: a renamed group keeps its shares (their Cedar
principal Role::"<name>" follows the name), a deleted document or dashboard
takes its shares with it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import receiver

from policies.models import ShareGrant
from policies.services import policy_version_bump, shares_delete_for_resource, shares_follow_group_rename


@receiver(m2m_changed, sender=get_user_model().groups.through)
def _membership_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in {"post_add", "post_remove", "post_clear"}:
        policy_version_bump()


@receiver(post_delete, sender=Group)
def _group_deleted(sender: Any, **kwargs: Any) -> None:
    policy_version_bump()


@receiver(post_save, sender=Group)
def _group_saved(sender: Any, instance: Group, created: bool, raw: bool = False, **kwargs: Any) -> None:
    # Roles are group names, cached per policy version: a rename moves the version.
    if not created and not raw:
        shares_follow_group_rename(group=instance)


def _resource_deleted(resource_type: str) -> Any:
    def handler(sender: Any, instance: Any, **kwargs: Any) -> None:
        shares_delete_for_resource(resource_type=resource_type, resource_id=instance.pk)

    return handler


# The shared models by label (lazy senders: this app never imports the apps it serves).
_share_cleanups = {resource_type: _resource_deleted(resource_type) for resource_type in ShareGrant.RESOURCE_MODELS}
for _resource_type, _label in ShareGrant.RESOURCE_MODELS.items():
    post_delete.connect(_share_cleanups[_resource_type], sender=_label, dispatch_uid=f"share-cleanup-{_label}")
