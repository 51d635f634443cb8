"""Reads: the policy set as stored, its errors with an edit applied, the current version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies import cedar

if TYPE_CHECKING:
    from policies.models import AccessPolicy, RateLimitPolicy


def policy_version() -> int:
    from policies.models import PolicyState

    version = PolicyState.objects.filter(pk=1).values_list("version", flat=True).first()
    return int(version) if version is not None else 0


def enabled_sources() -> list[cedar.PolicySource]:
    from policies.models import AccessPolicy

    return [
        cedar.PolicySource(name, text)
        for name, text in AccessPolicy.objects.filter(enabled=True).order_by("name").values_list("name", "text")
    ]


def share_links() -> list[cedar.Link]:
    """Links whose template is enabled (a disabled template grants nothing)."""
    from policies.models import ShareGrant

    grants = ShareGrant.objects.select_related("template").filter(template__enabled=True).order_by("pk")
    return [grant.as_link() for grant in grants]


def policy_set_errors_with(policy: AccessPolicy) -> list[cedar.PolicyError]:
    """Errors of the enabled set as it would be with `policy` saved (whether enabled or not).

    The edited policy is validated even when disabled, so nothing invalid is
    ever stored and enabling it later cannot break the set.
    """
    from policies.models import AccessPolicy, ShareGrant

    others = AccessPolicy.objects.filter(enabled=True).exclude(name=policy.name)
    if policy.pk:
        others = others.exclude(pk=policy.pk)
    sources = [cedar.PolicySource(name, text) for name, text in others.order_by("name").values_list("name", "text")]
    sources.append(policy.source())
    links = []
    if policy.pk:
        grants = ShareGrant.objects.select_related("template").filter(template__enabled=True)
        for grant in grants:
            if grant.template_id == policy.pk:
                if not policy.enabled:
                    continue
                grant.template = policy
            links.append(grant.as_link())
    else:
        links = share_links()
    errors = cedar.check_policies(sources, links)
    if AccessPolicy.objects.filter(name=policy.name).exclude(pk=policy.pk).exists():
        errors.insert(0, cedar.PolicyError(policy.name, "another policy already has this name"))
    return errors


def rate_limit_policies() -> list[RateLimitPolicy]:
    from policies.models import RateLimitPolicy

    return list(RateLimitPolicy.objects.select_related("role").filter(enabled=True).order_by("name"))
