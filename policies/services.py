"""Writes: saving policies with versions, shares, the policy version bump, import/export."""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F

from policies import cedar, engine, watch
from policies.models import AccessPolicy, AccessPolicyVersion, PolicyState, RateLimitPolicy, ShareGrant

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | AnonymousUser | None


# --- The policy version ---------------------------------------------------------


def policy_version_bump() -> int:
    """Move the policy version (inside the caller's transaction); notify every process after commit."""
    PolicyState.objects.get_or_create(pk=1)
    PolicyState.objects.filter(pk=1).update(version=F("version") + 1)
    version = int(PolicyState.objects.values_list("version", flat=True).get(pk=1))
    # This thread sees its own uncommitted change at once; other processes
    # (and threads) hear of it only after commit.
    engine.mark_stale()
    transaction.on_commit(lambda: watch.announce(version))
    return version


# --- Access policies -------------------------------------------------------------


def _user(actor: Actor) -> Any:
    return actor if actor is not None and actor.is_authenticated else None


def _snapshot_text(*, description: str, enabled: bool, text: str) -> list[str]:
    return [f"enabled: {enabled}\n", f"description: {description}\n", "\n", *text.strip().splitlines(keepends=True)]


def _record_version(policy: AccessPolicy, *, change: str, actor: Actor) -> AccessPolicyVersion:
    previous = AccessPolicyVersion.objects.filter(policy_name=policy.name).order_by("-number").first()
    before = (
        _snapshot_text(description=previous.description, enabled=previous.enabled, text=previous.text)
        if previous
        else []
    )
    after = (
        []
        if change == AccessPolicyVersion.Change.DELETED
        else _snapshot_text(description=policy.description, enabled=policy.enabled, text=policy.text)
    )
    previous_label = f"{policy.name} v{previous.number}" if previous else "(none)"
    diff = "".join(
        difflib.unified_diff(
            [line if line.endswith("\n") else line + "\n" for line in before],
            [line if line.endswith("\n") else line + "\n" for line in after],
            previous_label,
            f"{policy.name} ({change})",
        )
    )
    return AccessPolicyVersion.objects.create(
        policy=policy if change != AccessPolicyVersion.Change.DELETED else None,
        policy_name=policy.name,
        number=(previous.number + 1) if previous else 1,
        change=change,
        description=policy.description,
        enabled=policy.enabled,
        text=policy.text,
        diff=diff,
        created_by=_user(actor),
    )


@transaction.atomic
def access_policy_save(*, policy: AccessPolicy, actor: Actor, change: str | None = None) -> AccessPolicy:
    """Validate (the whole set with this edit), save, keep a version, bump the policy version.

    Raises ValidationError and saves nothing when the set would be invalid.
    """
    policy.full_clean()
    created = policy.pk is None
    if created:
        policy.created_by = _user(actor)
    policy.updated_by = _user(actor)
    policy.save()
    _record_version(
        policy,
        change=change or (AccessPolicyVersion.Change.CREATED if created else AccessPolicyVersion.Change.UPDATED),
        actor=actor,
    )
    policy_version_bump()
    return policy


@transaction.atomic
def access_policy_delete(*, policy: AccessPolicy, actor: Actor) -> None:
    if policy.links.exists():
        raise ValidationError(
            f"{policy.name}: revoke the {policy.links.count()} share(s) linked to this template first"
        )
    _record_version(policy, change=AccessPolicyVersion.Change.DELETED, actor=actor)
    policy.delete()
    policy_version_bump()


@transaction.atomic
def access_policy_restore(*, version: AccessPolicyVersion, actor: Actor) -> AccessPolicy:
    """Make a stored version current again (validated like any save; recreates a deleted policy)."""
    policy = AccessPolicy.objects.filter(name=version.policy_name).first() or AccessPolicy(name=version.policy_name)
    policy.description = version.description
    policy.enabled = version.enabled
    policy.text = version.text
    return access_policy_save(policy=policy, actor=actor, change=AccessPolicyVersion.Change.RESTORED)


# --- Shares (template-linked policies) ----------------------------------------------

SHARE_TEMPLATES = {"viewer": "share-viewer", "editor": "share-editor"}


@transaction.atomic
def share_grant(
    *,
    resource_type: str,
    resource_id: str | int,
    role: str,
    user: Any = None,
    group_name: str | None = None,
    actor: Actor = None,
) -> ShareGrant:
    """Grant `role` ("viewer" or "editor") on a document or dashboard to a user or a group.

    The share is a link of the template share-<role>; the caller has already
    checked that `actor` may share the resource (authorize(..., "share", ...)).
    """
    if role not in SHARE_TEMPLATES:
        raise ValidationError(f"role must be one of {', '.join(SHARE_TEMPLATES)}, got {role!r}")
    if (user is None) == (group_name is None):
        raise ValidationError("share with exactly one of a user or a group")
    template = AccessPolicy.objects.filter(name=SHARE_TEMPLATES[role], is_template=True).first()
    if template is None:
        raise ValidationError(f"the template {SHARE_TEMPLATES[role]} is missing: restore it in the admin")
    principal_type, principal_id = ("User", str(user.pk)) if user is not None else ("Role", str(group_name))
    grant, _created = ShareGrant.objects.get_or_create(
        template=template,
        principal_type=principal_type,
        principal_id=principal_id,
        resource_type=resource_type,
        resource_id=str(resource_id),
        defaults={"created_by": _user(actor)},
    )
    policy_version_bump()
    return grant


@transaction.atomic
def share_revoke(
    *,
    resource_type: str,
    resource_id: str | int,
    user: Any = None,
    group_name: str | None = None,
    role: str | None = None,
) -> int:
    """Revoke shares of a resource to a user or group (one role, or all); returns how many."""
    grants = ShareGrant.objects.filter(resource_type=resource_type, resource_id=str(resource_id))
    if user is not None:
        grants = grants.filter(principal_type="User", principal_id=str(user.pk))
    if group_name is not None:
        grants = grants.filter(principal_type="Role", principal_id=group_name)
    if role is not None:
        grants = grants.filter(template__name=SHARE_TEMPLATES.get(role, role))
    count, _ = grants.delete()
    if count:
        policy_version_bump()
    return count


@transaction.atomic
def share_grant_delete(*, grant: ShareGrant) -> None:
    grant.delete()
    policy_version_bump()


# --- Rate-limit policies ---------------------------------------------------------------


@transaction.atomic
def rate_limit_policy_save(*, policy: RateLimitPolicy) -> RateLimitPolicy:
    policy.full_clean()
    policy.save()
    policy_version_bump()
    return policy


@transaction.atomic
def rate_limit_policy_delete(*, policy: RateLimitPolicy) -> None:
    policy.delete()
    policy_version_bump()


# --- Import / export ----------------------------------------------------------------------

EXPORT_FORMAT = "webconnect-policies"
EXPORT_FORMAT_VERSION = 1
RATE_FIELDS = ("name", "description", "enabled", "scope", "actions", "channel_pattern", "limits", "strategy")


def policies_export() -> dict[str, Any]:
    access = [
        {"name": p.name, "description": p.description, "enabled": p.enabled, "text": p.text}
        for p in AccessPolicy.objects.order_by("name")
    ]
    rate = []
    for r in RateLimitPolicy.objects.select_related("role").order_by("name"):
        row: dict[str, Any] = {field: getattr(r, field) for field in RATE_FIELDS}
        row["role"] = r.role.name if r.role else None
        rate.append(row)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_FORMAT_VERSION,
        "schema_version": cedar.SCHEMA_VERSION,
        "access_policies": access,
        "rate_limit_policies": rate,
    }


@dataclass
class ImportResult:
    access_policies: int
    rate_limit_policies: int
    removed: int


class ImportError_(ValidationError):
    """Every problem in an import file; nothing was imported."""


def _load_document(content: str | bytes) -> Any:
    text = content.decode() if isinstance(content, bytes) else content
    try:
        return json.loads(text)
    except json.JSONDecodeError as json_error:
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as yaml_error:
            raise ImportError_([f"the file is neither JSON ({json_error}) nor YAML ({yaml_error})"]) from None


@transaction.atomic
def policies_import(*, content: str | bytes, actor: Actor) -> ImportResult:
    """Import every policy from one JSON or YAML file, all or nothing.

    The whole file is validated first (each access policy, the set together
    against the schema, each rate limit); one bad entry imports nothing and
    every error is listed. The file is the whole set: policies not in it are
    removed (a template that shares are linked to must stay in it).
    """
    from django.contrib.auth.models import Group

    data = _load_document(content)
    errors: list[str] = []
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ImportError_([f'not a policies file: expected an object with "format": "{EXPORT_FORMAT}"'])
    access_rows = data.get("access_policies") or []
    rate_rows = data.get("rate_limit_policies") or []
    if not isinstance(access_rows, list) or not isinstance(rate_rows, list):
        raise ImportError_(["access_policies and rate_limit_policies must be lists"])
    sources: list[cedar.PolicySource] = []
    for index, row in enumerate(access_rows):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str) or not isinstance(row.get("text"), str):
            errors.append(f"access_policies[{index}]: needs a string name and text")
            continue
        sources.append(cedar.PolicySource(row["name"], row["text"]))
    names = {source.name for source in sources}
    grants = list(ShareGrant.objects.select_related("template"))
    kept_links = [grant.as_link() for grant in grants if grant.template.name in names]
    errors.extend(str(error) for error in cedar.check_policies(sources, kept_links))
    for name in sorted({grant.template.name for grant in grants} - names):
        errors.append(f"{name}: shares are linked to this template; it must stay in the file")
    rate_objects: list[RateLimitPolicy] = []
    seen_rate: set[str] = set()
    for index, row in enumerate(rate_rows):
        label = row.get("name") if isinstance(row, dict) else None
        label = label or f"rate_limit_policies[{index}]"
        if not isinstance(row, dict):
            errors.append(f"{label}: must be an object")
            continue
        if label in seen_rate:
            errors.append(f"{label}: another rate-limit policy already has this name")
            continue
        seen_rate.add(label)
        rate = RateLimitPolicy.objects.filter(name=row.get("name")).first() or RateLimitPolicy()
        for field in RATE_FIELDS:
            if field in row:
                setattr(rate, field, row[field])
        role = row.get("role")
        rate.role = Group.objects.filter(name=role).first() if role else None
        if role and rate.role is None:
            errors.append(f"{label}: no group named {role!r}")
        try:
            rate.full_clean(validate_unique=False)
        except ValidationError as exc:
            errors.extend(f"{label}: {field}: {'; '.join(msgs)}" for field, msgs in exc.message_dict.items())
        rate_objects.append(rate)
    if errors:
        raise ImportError_(errors)

    stale = AccessPolicy.objects.exclude(name__in=names)
    for policy in stale:
        _record_version(policy, change=AccessPolicyVersion.Change.DELETED, actor=actor)
    removed = stale.delete()[0]
    removed += RateLimitPolicy.objects.exclude(name__in=seen_rate).delete()[0]
    for row in access_rows:
        policy = AccessPolicy.objects.filter(name=row["name"]).first() or AccessPolicy(name=row["name"])
        unchanged = (
            policy.pk
            and policy.text == row["text"]
            and policy.enabled == bool(row.get("enabled", True))
            and policy.description == row.get("description", "")
        )
        if unchanged:
            continue
        policy.text = row["text"]
        policy.enabled = bool(row.get("enabled", True))
        policy.description = str(row.get("description", ""))
        _parsed, policy.is_template, _problems = cedar.parse_one(policy.source())
        policy.updated_by = _user(actor)
        if policy.pk is None:
            policy.created_by = _user(actor)
        policy.save()
        _record_version(policy, change=AccessPolicyVersion.Change.IMPORTED, actor=actor)
    for rate in rate_objects:
        rate.save()
    policy_version_bump()
    return ImportResult(len(access_rows), len(rate_objects), removed)
