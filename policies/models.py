"""Access policies (Cedar), their versions, shares (template links) and rate-limit policies."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from policies import cedar


class PolicyState(models.Model):
    """The one row holding the policy version: every process caches against it.

    Any change to access policies, shares, rate-limit policies or group
    membership bumps `version` in the same transaction; processes notice it
    (Redis notification, or their periodic check) and drop what they cached.
    """

    version = models.BigIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"policy version {self.version}"


class AccessPolicy(models.Model):
    name = models.CharField(
        max_length=100,
        unique=True,
        help_text="The policy's Cedar @id: letters, digits, '_', '.', ':' or '-'. Do not write @id in the text.",
    )
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    text = models.TextField(
        help_text="Exactly one Cedar permit(...) or forbid(...) statement, or a template using ?principal/?resource."
    )
    is_template = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "access policies"

    def __str__(self) -> str:
        return self.name

    def source(self) -> cedar.PolicySource:
        return cedar.PolicySource(self.name, self.text)

    def clean(self) -> None:
        # Validated as part of the whole set: the enabled policies as they are
        # in the database with this one replaced, against the schema.
        from policies.selectors import policy_set_errors_with

        errors = policy_set_errors_with(self)
        if errors:
            raise ValidationError({"text": [str(error) for error in errors]})
        _parsed, self.is_template, _problems = cedar.parse_one(self.source())


class AccessPolicyVersion(models.Model):
    """A snapshot of a policy after each save (and at deletion), restorable."""

    class Change(models.TextChoices):
        CREATED = "created"
        UPDATED = "updated"
        DELETED = "deleted"
        RESTORED = "restored"
        IMPORTED = "imported"

    policy = models.ForeignKey(AccessPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="versions")
    policy_name = models.CharField(max_length=100, db_index=True)
    number = models.PositiveIntegerField()
    change = models.CharField(max_length=16, choices=Change.choices)
    description = models.TextField(blank=True)
    enabled = models.BooleanField()
    text = models.TextField()
    diff = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["policy_name", "-number"]
        constraints = [models.UniqueConstraint(fields=["policy_name", "number"], name="policy_version_unique")]

    def __str__(self) -> str:
        return f"{self.policy_name} v{self.number} ({self.change})"


class ShareGrant(models.Model):
    """A share: a template (share-viewer, share-editor) linked to a user or role and a resource.

    Each row becomes one template-linked Cedar policy with the id "share:<pk>";
    deleting the row revokes the share.
    """

    class PrincipalType(models.TextChoices):
        USER = "User"
        ROLE = "Role"

    class ResourceType(models.TextChoices):
        DOCUMENT = "Document"
        DASHBOARD = "Dashboard"

    template = models.ForeignKey(AccessPolicy, on_delete=models.PROTECT, related_name="links")
    principal_type = models.CharField(max_length=8, choices=PrincipalType.choices)
    principal_id = models.CharField(max_length=150, help_text="A user id, or a group name for a role.")
    resource_type = models.CharField(max_length=16, choices=ResourceType.choices)
    resource_id = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["template", "principal_type", "principal_id", "resource_type", "resource_id"],
                name="share_grant_unique",
            )
        ]

    def __str__(self) -> str:
        principal = f"{self.principal_type}::{self.principal_id}"
        return f"{self.template.name}: {principal} on {self.resource_type}::{self.resource_id}"

    def clean(self) -> None:
        template = AccessPolicy.objects.filter(pk=self.template_id).first() if self.template_id else None
        if template is None:
            return
        if not template.is_template:
            raise ValidationError({"template": f"{template.name} is not a template (it has no ?principal/?resource)"})
        probe = cedar.Link(
            f"{cedar.LINK_PREFIX}new",
            template.name,
            (self.principal_type, self.principal_id),
            (self.resource_type, self.resource_id),
        )
        try:
            cedar.build_policy_set([template.source()], [probe])
        except ValueError as exc:
            raise ValidationError(f"cannot link {template.name}: {exc}") from None

    @property
    def link_id(self) -> str:
        return f"{cedar.LINK_PREFIX}{self.pk}"

    def as_link(self) -> cedar.Link:
        return cedar.Link(
            self.link_id,
            self.template.name,
            (self.principal_type, self.principal_id),
            (self.resource_type, self.resource_id),
        )


class RateLimitPolicy(models.Model):
    class Scope(models.TextChoices):
        USER = "user", "per user"
        IP = "ip", "per client IP"
        USER_CHANNEL = "user_channel", "per user and channel"
        CHANNEL = "channel", "per channel"
        CLIENT = "client", "per OAuth client (token)"

    class Strategy(models.TextChoices):
        SLIDING = "sliding", "sliding window counter"
        MOVING = "moving", "moving window (exact, for low volumes)"

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.USER)
    actions = models.CharField(
        max_length=200, blank=True, help_text="Comma-separated actions (e.g. publish,subscribe); empty = all."
    )
    channel_pattern = models.CharField(
        max_length=200, blank=True, help_text="Glob on the resource id, e.g. chat.* ; empty = any."
    )
    role = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, help_text="Only members of this group; empty = all."
    )
    limits = models.CharField(max_length=200, help_text='One or more limits, e.g. "20/second;600/minute".')
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.SLIDING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "rate-limit policies"

    def __str__(self) -> str:
        return self.name

    def action_list(self) -> list[str]:
        return [item.strip() for item in self.actions.split(",") if item.strip()]

    def clean(self) -> None:
        from policies.ratelimit import parse_limits

        errors: dict[str, Any] = {}
        try:
            parse_limits(self.limits)
        except ValueError as exc:
            errors["limits"] = str(exc)
        unknown = [action for action in self.action_list() if action not in cedar.ACTIONS]
        if unknown:
            errors["actions"] = f"unknown action(s): {', '.join(unknown)}; known: {', '.join(cedar.ACTIONS)}"
        if errors:
            raise ValidationError(errors)


class ConnectionLimitPolicy(models.Model):
    """At most `max_connections` open WebSockets at once, per user or per client IP."""

    class Scope(models.TextChoices):
        USER = "user", "per user"
        IP = "ip", "per client IP"

    name = models.CharField(max_length=100, unique=True, validators=[RegexValidator(r"^[A-Za-z0-9_.-]+$")])
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    scope = models.CharField(max_length=8, choices=Scope.choices, default=Scope.USER)
    role = models.ForeignKey(
        Group, null=True, blank=True, on_delete=models.CASCADE, help_text="Only members of this group; empty = all."
    )
    max_connections = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "connection-limit policies"

    def __str__(self) -> str:
        return f"{self.name}: {self.max_connections} {self.get_scope_display()}"
