"""Access policies (Cedar), their versions, shares (template links) and rate-limit policies."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from policies import cedar
from policies.limitspec import parse_limits


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

    def set_errors(self) -> list[cedar.PolicyError]:
        """Errors of the enabled set as it would be with this policy saved (whether enabled or not).

        The edited policy is validated even when disabled, so nothing invalid is
        ever stored and enabling it later cannot break the set.
        """
        others = type(self).objects.filter(enabled=True).exclude(name=self.name)
        if self.pk:
            others = others.exclude(pk=self.pk)
        sources = [cedar.PolicySource(name, text) for name, text in others.order_by("name").values_list("name", "text")]
        sources.append(self.source())
        links = []
        grants = ShareGrant.objects.select_related("template").filter(template__enabled=True)
        if self.pk:
            for grant in grants:
                if grant.template_id == self.pk:
                    if not self.enabled:
                        continue
                    grant.template = self
                links.append(grant.as_link())
        else:
            links = [grant.as_link() for grant in grants.order_by("pk")]
        errors = cedar.check_policies(sources, links)
        if type(self).objects.filter(name=self.name).exclude(pk=self.pk).exists():
            errors.insert(0, cedar.PolicyError(self.name, "another policy already has this name"))
        return errors

    def clean(self) -> None:
        # Validated as part of the whole set: the enabled policies as they are
        # in the database with this one replaced, against the schema.
        errors = self.set_errors()
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


# The two roles a share page offers, and the template each one links.
SHARE_TEMPLATES = {"viewer": "share-viewer", "editor": "share-editor"}


class ShareGrant(models.Model):
    """A share: a template (share-viewer, share-editor) linked to a user or a group and a resource.

    Each row becomes one template-linked Cedar policy with the id "share:<pk>";
    deleting the row revokes the share. `user` or `group` says who; the Cedar
    principal (`principal_type`, `principal_id`: User::"<pk>" or Role::"<group
    name>") is derived from it in clean() and follows a group rename
    (policies.receivers). Deleting the user, the group or the resource deletes
    the share.
    """

    class PrincipalType(models.TextChoices):
        USER = "User"
        ROLE = "Role"

    class ResourceType(models.TextChoices):
        DOCUMENT = "Document"
        DASHBOARD = "Dashboard"

    # The model behind each shareable resource type, by label: the policies app sits
    # below the apps whose objects are shared, so it never imports them.
    RESOURCE_MODELS = {"Document": "collab.Document", "Dashboard": "dashboards.Dashboard"}

    template = models.ForeignKey(
        AccessPolicy,
        on_delete=models.PROTECT,
        related_name="links",
        limit_choices_to={"is_template": True},
        help_text="share-viewer (read) or share-editor (read and edit), or another template.",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="share_grants"
    )
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.CASCADE, related_name="share_grants")
    principal_type = models.CharField(max_length=8, choices=PrincipalType.choices, editable=False)
    principal_id = models.CharField(
        max_length=150, editable=False, help_text="The Cedar principal's id: the user's pk, or the group's name."
    )
    resource_type = models.CharField(max_length=16, choices=ResourceType.choices)
    resource_id = models.CharField(max_length=64, help_text="The document's or dashboard's id.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["resource_type", "resource_id", "pk"]
        indexes = [models.Index(fields=["resource_type", "resource_id"], name="share_grant_resource")]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "principal_type", "principal_id", "resource_type", "resource_id"],
                name="share_grant_unique",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(principal_type="User", user__isnull=False, group__isnull=True)
                    | models.Q(principal_type="Role", user__isnull=True, group__isnull=False)
                ),
                name="share_grant_user_xor_group",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template.name}: {self.principal_label} on {self.resource_type}::{self.resource_id}"

    @property
    def role(self) -> str:
        """viewer or editor (or the template's name, for another template)."""
        name = self.template.name
        return next((role for role, template in SHARE_TEMPLATES.items() if template == name), name)

    @property
    def principal_label(self) -> str:
        if self.user_id is not None and self.user is not None:
            return str(self.user.get_username())
        if self.group_id is not None and self.group is not None:
            return f"group {self.group.name}"
        return f"{self.principal_type}::{self.principal_id}"

    def derive_principal(self) -> None:
        """Set the Cedar principal from `user` or `group`."""
        if self.user_id is not None:
            self.principal_type, self.principal_id = self.PrincipalType.USER, str(self.user_id)
        elif self.group_id is not None and self.group is not None:
            self.principal_type, self.principal_id = self.PrincipalType.ROLE, self.group.name

    def clean(self) -> None:
        self.clean_principal()
        label = self.RESOURCE_MODELS.get(self.resource_type)
        if label is not None and not self._resource_exists(label):
            raise ValidationError(
                {"resource_id": f"There is no {self.resource_type.lower()} with id {self.resource_id!r}."}
            )
        self.clean_link()

    def clean_principal(self) -> None:
        if (self.user_id is None) == (self.group_id is None):
            raise ValidationError("Share with exactly one user or one group.")
        self.derive_principal()

    def clean_link(self) -> None:
        """The template is a template and links with this principal and resource."""
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

    def _resource_exists(self, label: str) -> bool:
        if not str(self.resource_id).isdigit():
            return False
        return bool(apps.get_model(label).objects.filter(pk=int(self.resource_id)).exists())

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


CASE_CONTEXT_KEYS = ("client_ip", "now", "auth_method", "token_scopes")


class PolicyTestCase(models.Model):
    """An expected decision, checked against the proposed set on every save and import.

    The principal is "anonymous", a username, or `User::"<id>"`; a user that does
    not exist is evaluated with `groups` and `is_staff` from the case, so shipped
    cases need no accounts. Resource attrs and context are as the simulator takes them.
    """

    class Expected(models.TextChoices):
        ALLOW = "allow"
        DENY = "deny"

    name = models.CharField(max_length=100, unique=True)
    enabled = models.BooleanField(default=True)
    principal = models.CharField(
        max_length=150, default="anonymous", help_text='"anonymous", a username, or User::"<id>".'
    )
    groups = models.JSONField(
        default=list, blank=True, help_text='Group names of a user that does not exist, e.g. ["ops"].'
    )
    is_staff = models.BooleanField(default=False, help_text="Staff flag of a user that does not exist.")
    action = models.CharField(max_length=32, choices=[(a, a) for a in cedar.ACTIONS])
    resource_type = models.CharField(max_length=32, choices=[(t, t) for t in cedar.RESOURCE_TYPES])
    resource_id = models.CharField(max_length=255)
    attrs = models.JSONField(
        default=dict, blank=True, help_text='Resource attributes, e.g. {"owner_id": 1, "visibility": "public"}.'
    )
    context = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            'Request context: client_ip, now (ISO time), auth_method, token_scopes; e.g. {"client_ip": "10.0.0.1"}.'
        ),
    )
    expected = models.CharField(max_length=8, choices=Expected.choices)
    note = models.TextField(blank=True, help_text="Why this decision is expected (shown when the case fails).")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not isinstance(self.groups, list) or not all(isinstance(group, str) for group in self.groups):
            raise ValidationError({"groups": "a list of group names"})
        if not isinstance(self.attrs, dict):
            raise ValidationError({"attrs": "a JSON object"})
        if not isinstance(self.context, dict) or set(self.context) - set(CASE_CONTEXT_KEYS):
            raise ValidationError({"context": "a JSON object with client_ip, now, auth_method, token_scopes"})
