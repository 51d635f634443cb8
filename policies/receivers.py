"""Group membership is part of every decision (User in Role): a change moves the policy version."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete
from django.dispatch import receiver

from policies.services import policy_version_bump


@receiver(m2m_changed, sender=get_user_model().groups.through)
def _membership_changed(sender: Any, action: str, **kwargs: Any) -> None:
    if action in {"post_add", "post_remove", "post_clear"}:
        policy_version_bump()


@receiver(post_delete, sender=Group)
def _group_deleted(sender: Any, **kwargs: Any) -> None:
    policy_version_bump()
