"""Reads: the policy set as stored, its errors with an edit applied, the current version, shares,
and the directory of users and groups a share names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Case, IntegerField, Q, Value, When

from policies import cedar
from policies.models import AccessPolicy, PolicyState, RateLimitPolicy, ShareGrant


def policy_version() -> int:
    version = PolicyState.objects.filter(pk=1).values_list("version", flat=True).first()
    return int(version) if version is not None else 0


def enabled_sources() -> list[cedar.PolicySource]:
    return [
        cedar.PolicySource(name, text)
        for name, text in AccessPolicy.objects.filter(enabled=True).order_by("name").values_list("name", "text")
    ]


def share_links(*, enabled_only: bool = True) -> list[cedar.Link]:
    """Links whose template is enabled (a disabled template grants nothing); every link if not `enabled_only`."""
    # Rows, not model instances: a set with thousands of shares is loaded on every version.
    grants = ShareGrant.objects.filter(template__enabled=True) if enabled_only else ShareGrant.objects.all()
    rows = grants.order_by("pk").values_list(
        "pk", "template__name", "principal_type", "principal_id", "resource_type", "resource_id"
    )
    return [
        cedar.Link(f"{cedar.LINK_PREFIX}{pk}", template, (principal_type, principal_id), (resource_type, resource_id))
        for pk, template, principal_type, principal_id, resource_type, resource_id in rows
    ]


def rate_limit_policies() -> list[RateLimitPolicy]:
    return list(RateLimitPolicy.objects.select_related("role").filter(enabled=True).order_by("name"))


# --- Shares ------------------------------------------------------------------------


def shares_of(*, resource_type: str, resource_id: str | int) -> list[ShareGrant]:
    """The shares of one document or dashboard: users first (by name), then groups."""
    grants = ShareGrant.objects.filter(resource_type=resource_type, resource_id=str(resource_id)).select_related(
        "template", "user", "group", "created_by"
    )
    return sorted(grants, key=lambda g: (g.group_id is not None, g.principal_label.lower(), g.pk))


def shared_resource_ids(*, user: Any, resource_type: str) -> list[int]:
    """Ids of the resources of `resource_type` shared with `user`, directly or through a group."""
    if user is None or not user.is_authenticated:
        return []
    ids = ShareGrant.objects.filter(
        Q(user=user) | Q(group__in=user.groups.all()), resource_type=resource_type
    ).values_list("resource_id", flat=True)
    return sorted({int(value) for value in ids if value.isdigit()})


# --- The directory (the share dialog's picker) -------------------------------------

DIRECTORY_MIN_QUERY = 2
DIRECTORY_MAX_RESULTS = 10


@dataclass(frozen=True)
class DirectoryEntry:
    type: str  # "user" or "group"
    id: int
    name: str  # the username, or the group's name
    display_name: str  # the full name (or the username), or the group's name
    rank: int  # 0 exact, 1 prefix, 2 anywhere


def _rank(field: str, query: str) -> Case:
    return Case(
        When(**{f"{field}__iexact": query}, then=Value(0)),
        When(**{f"{field}__istartswith": query}, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )


def directory_search(*, query: str, limit: int = DIRECTORY_MAX_RESULTS) -> list[DirectoryEntry]:
    """Active users (by username or name) and groups (by name) matching `query`, best first.

    Nothing for a query shorter than DIRECTORY_MIN_QUERY. E-mail addresses are
    neither searched nor returned.
    """
    query = query.strip()
    if len(query) < DIRECTORY_MIN_QUERY:
        return []
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(username__icontains=query) | Q(first_name__icontains=query) | Q(last_name__icontains=query))
        .annotate(rank=_rank("username", query))
        .order_by("rank", "username")[:limit]
    )
    groups = (
        Group.objects.filter(name__icontains=query).annotate(rank=_rank("name", query)).order_by("rank", "name")[:limit]
    )
    entries = [
        DirectoryEntry("user", user.pk, user.get_username(), user.get_full_name() or user.get_username(), user.rank)
        for user in users
    ] + [DirectoryEntry("group", group.pk, group.name, group.name, group.rank) for group in groups]
    entries.sort(key=lambda entry: (entry.rank, entry.type != "user", entry.name.lower()))
    return entries[:limit]
