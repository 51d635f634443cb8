"""Reads: the policy set as stored, its errors with an edit applied, the current version."""

from __future__ import annotations

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


def share_links() -> list[cedar.Link]:
    """Links whose template is enabled (a disabled template grants nothing)."""
    grants = ShareGrant.objects.select_related("template").filter(template__enabled=True).order_by("pk")
    return [grant.as_link() for grant in grants]


def rate_limit_policies() -> list[RateLimitPolicy]:
    return list(RateLimitPolicy.objects.select_related("role").filter(enabled=True).order_by("name"))
