"""Writes: saving policies with versions, shares, the policy version bump, import/export."""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, QuerySet

from policies import cedar, engine, impact, policytests, watch
from policies.models import (
    SHARE_TEMPLATES,
    AccessPolicy,
    AccessPolicyVersion,
    PolicyState,
    PolicyTestCase,
    RateLimitPolicy,
    ShareGrant,
)
from webconnect.audit import audit_record

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
def access_policy_save(
    *, policy: AccessPolicy, actor: Actor, change: str | None = None, impact_summary: dict[str, Any] | None = None
) -> AccessPolicy:
    """Validate (the whole set with this edit), save, keep a version, bump the policy version.

    Raises ValidationError and saves nothing when the set would be invalid.
    `impact_summary` (what the administrator confirmed, `impact.Impact.summary`)
    is audited with the save.
    """
    policy.full_clean()
    failing = policytests.failures_with_edit(name=policy.name, text=policy.text, enabled=policy.enabled, pk=policy.pk)
    if failing:
        raise ValidationError({"text": failing})
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
    if impact_summary is not None:
        audit_record(
            action="policy.change_confirmed", actor=actor, target=f"AccessPolicy::{policy.name}", details=impact_summary
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
#
# One share per user or group per resource: granting another role replaces the
# previous one (so an editor can be turned into a viewer). Every change is
# audited and moves the policy version, which makes every process reload the
# policy set and re-check its live sessions (an open document socket of a
# revoked viewer closes with 4403).


def _share_template(role: str) -> AccessPolicy:
    name = SHARE_TEMPLATES.get(role, role)
    template = AccessPolicy.objects.filter(name=name, is_template=True).first()
    if template is not None:
        return template
    if role in SHARE_TEMPLATES:
        raise ValidationError(f"the template {name} is missing: restore it in the admin")
    raise ValidationError(f"role must be one of {', '.join(SHARE_TEMPLATES)} (or a share template), got {role!r}")


def _share_target(resource_type: str, resource_id: str | int) -> str:
    return f"{resource_type}::{resource_id}"


def _audit_share(action: str, *, grant: ShareGrant, actor: Actor, **details: Any) -> None:
    audit_record(
        action=action,
        actor=actor,
        target=_share_target(grant.resource_type, grant.resource_id),
        details={
            "principal": f"{grant.principal_type}::{grant.principal_id}",
            "name": grant.principal_label,
            "role": grant.role,
            "share": grant.link_id,
            **details,
        },
    )


def _principal_grants(resource_type: str, resource_id: str, *, user: Any, group: Group | None) -> QuerySet[ShareGrant]:
    grants = ShareGrant.objects.filter(resource_type=resource_type, resource_id=resource_id)
    return grants.filter(user=user) if user is not None else grants.filter(group=group)


@transaction.atomic
def share_grant(
    *,
    resource_type: str,
    resource_id: str | int,
    role: str,
    user: Any = None,
    group: Group | None = None,
    group_name: str | None = None,
    actor: Actor = None,
) -> ShareGrant:
    """Give a user or a group `role` ("viewer", "editor", or a share template's name) on a resource.

    Replaces that user's or group's other shares of the resource; granting the
    role they already have changes nothing. The caller has already checked that
    `actor` may share the resource (authorize(..., "share", ...)).
    """
    if group_name is not None:
        group = Group.objects.filter(name=group_name).first()
        if group is None:
            raise ValidationError(f"there is no group named {group_name!r}")
    if (user is None) == (group is None):
        raise ValidationError("share with exactly one of a user or a group")
    template = _share_template(role)
    resource_id = str(resource_id)
    # Row locks on PostgreSQL; two concurrent grants of different roles to the
    # same principal could still both insert on SQLite (its writes are serialised,
    # but this read is not): the result is the union of both roles until the next
    # grant or revoke, never a share nobody asked for.
    current = list(
        _principal_grants(resource_type, resource_id, user=user, group=group)
        .select_for_update(of=("self",))
        .select_related("template", "user", "group")
    )
    kept = next((grant for grant in current if grant.template_id == template.pk), None)
    replaced = [grant for grant in current if grant is not kept]
    if kept is not None and not replaced:
        return kept
    for grant in replaced:
        grant.delete()
    if kept is None:
        kept = ShareGrant(
            template=template,
            user=user,
            group=group,
            resource_type=resource_type,
            resource_id=resource_id,
            created_by=_user(actor),
        )
        # The caller loaded the resource to check the share right: only the principal
        # and the link are checked here (the admin form checks the resource too).
        kept.clean_principal()
        kept.clean_link()
        kept.save()
    _audit_share("share.granted", grant=kept, actor=actor, replaced=sorted(grant.role for grant in replaced))
    policy_version_bump()
    return kept


@transaction.atomic
def share_revoke(
    *,
    resource_type: str,
    resource_id: str | int,
    user: Any = None,
    group: Group | None = None,
    group_name: str | None = None,
    role: str | None = None,
    actor: Actor = None,
) -> int:
    """Revoke the shares of a resource to a user or a group (one role, or all); returns how many."""
    grants = ShareGrant.objects.filter(resource_type=resource_type, resource_id=str(resource_id))
    if user is not None:
        grants = grants.filter(user=user)
    if group is not None:
        grants = grants.filter(group=group)
    if group_name is not None:
        grants = grants.filter(principal_type=ShareGrant.PrincipalType.ROLE, principal_id=group_name)
    if role is not None:
        grants = grants.filter(template__name=SHARE_TEMPLATES.get(role, role))
    revoked = list(grants.select_related("template", "user", "group"))
    for grant in revoked:
        _audit_share("share.revoked", grant=grant, actor=actor)
        grant.delete()
    if revoked:
        policy_version_bump()
    return len(revoked)


@transaction.atomic
def share_grant_delete(*, grant: ShareGrant, actor: Actor = None) -> None:
    _audit_share("share.revoked", grant=grant, actor=actor)
    grant.delete()
    policy_version_bump()


@transaction.atomic
def shares_delete_for_resource(*, resource_type: str, resource_id: str | int) -> int:
    """The resource is gone: its shares go too (one audit event for all of them)."""
    grants = ShareGrant.objects.filter(resource_type=resource_type, resource_id=str(resource_id))
    count, _ = grants.delete()
    if count:
        audit_record(
            action="share.removed_with_resource",
            target=_share_target(resource_type, resource_id),
            details={"count": count},
        )
        policy_version_bump()
    return count


@transaction.atomic
def shares_follow_group_rename(*, group: Group) -> int:
    """Keep the Cedar principal Role::"<name>" of a group's shares equal to its current name."""
    updated = ShareGrant.objects.filter(group=group).exclude(principal_id=group.name).update(principal_id=group.name)
    policy_version_bump()
    return updated


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
    cases = [
        {field: getattr(case, field) for field in policytests.CASE_FIELDS} for case in PolicyTestCase.objects.all()
    ]
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_FORMAT_VERSION,
        "schema_version": cedar.SCHEMA_VERSION,
        "access_policies": access,
        "rate_limit_policies": rate,
        "test_cases": cases,
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


def policies_import_impact(*, content: str | bytes) -> impact.Impact:
    """What importing `content` would change (raises ImportError_ for a file that would not import)."""
    data = _load_document(content)
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise ImportError_([f'not a policies file: expected an object with "format": "{EXPORT_FORMAT}"'])
    rows = data.get("access_policies") or []
    if not isinstance(rows, list) or not all(
        isinstance(row, dict) and isinstance(row.get("name"), str) and isinstance(row.get("text"), str) for row in rows
    ):
        raise ImportError_(["access_policies must be a list of objects with a string name and text"])
    proposed = impact.proposed_from_document(data)
    errors = cedar.check_policies([cedar.PolicySource(row["name"], row["text"]) for row in rows], proposed.links)
    if errors:
        raise ImportError_([str(error) for error in errors])
    # The policy tests too, before a preview offers to import what the import would refuse.
    cases, case_errors = _import_cases(data)
    failing = case_errors or policytests.failures(proposed.sources, proposed.links, cases)
    if failing:
        raise ImportError_(failing)
    return impact.compute_impact(impact.PolicySet.current(), proposed)


def _import_cases(data: dict[str, Any]) -> tuple[list[PolicyTestCase], list[str]]:
    """The file's test cases (or, when it has none, the ones kept here) and what is wrong with them."""
    if "test_cases" not in data:
        return list(PolicyTestCase.objects.filter(enabled=True)), []
    rows = data.get("test_cases") or []
    if not isinstance(rows, list):
        return [], ["test_cases must be a list"]
    cases: list[PolicyTestCase] = []
    errors: list[str] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        label = (row.get("name") if isinstance(row, dict) else None) or f"test_cases[{index}]"
        if not isinstance(row, dict) or label in seen:
            errors.append(f"{label}: must be an object with a unique name")
            continue
        seen.add(label)
        case = policytests.case_from_row(row)
        try:
            case.full_clean(validate_unique=False)
        except ValidationError as exc:
            errors.extend(f"{label}: {field}: {'; '.join(msgs)}" for field, msgs in exc.message_dict.items())
        cases.append(case)
    return cases, errors


@transaction.atomic
def policies_import(
    *, content: str | bytes, actor: Actor, impact_summary: dict[str, Any] | None = None
) -> ImportResult:
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
    cases, case_errors = _import_cases(data)
    errors.extend(case_errors)
    if not errors:
        enabled = [
            cedar.PolicySource(row["name"], row["text"]) for row in access_rows if bool(row.get("enabled", True))
        ]
        enabled_names = {source.name for source in enabled}
        links = [link for link in kept_links if link.template in enabled_names]
        errors.extend(policytests.failures(enabled, links, cases))
    if errors:
        raise ImportError_(errors)

    if "test_cases" in data:
        PolicyTestCase.objects.exclude(name__in=[case.name for case in cases]).delete()
        for case in cases:
            case.pk = PolicyTestCase.objects.filter(name=case.name).values_list("pk", flat=True).first()
            case.save()
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
    if impact_summary is not None:
        audit_record(action="policy.import_confirmed", actor=actor, target="AccessPolicy::*", details=impact_summary)
    policy_version_bump()
    return ImportResult(len(access_rows), len(rate_objects), removed)
