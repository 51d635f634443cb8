"""Explaining a decision: the determining policies with their text, or, for a deny nobody
determined, "no permit matched" with the closest permits.

A closest permit is one whose head (principal, action, resource scope) matches the
request, so only its condition (`when`/`unless`) can have been false (or have
errored). Heads are read as the impact analysis reads them (`impact.Head`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from policies import cedar, impact

NO_PERMIT_MATCHED = "no permit matched"


@dataclass(frozen=True)
class ExplainedPolicy:
    name: str
    text: str
    effect: str  # "permit" or "forbid"


@dataclass(frozen=True)
class Explanation:
    determining: tuple[ExplainedPolicy, ...] = ()
    no_permit_matched: bool = False
    closest_permits: tuple[ExplainedPolicy, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, object]:
        return {
            "determining": [vars(policy) for policy in self.determining],
            "no_permit_matched": self.no_permit_matched,
            "closest_permits": [vars(policy) for policy in self.closest_permits],
        }


def _texts(sources: Sequence[cedar.PolicySource], links: Iterable[cedar.Link]) -> dict[str, tuple[str, str]]:
    """name -> (text, template of a link or "") for every policy and share of the set."""
    by_name = {source.name: (source.text.strip(), "") for source in sources}
    for link in links:
        template = by_name.get(link.template, ("", ""))[0]
        principal = f'{link.principal[0]}::"{link.principal[1]}"'
        resource = f'{link.resource[0]}::"{link.resource[1]}"'
        text = f"// {link.template} linked: ?principal = {principal}, ?resource = {resource}\n{template}"
        by_name[link.link_id] = (text, link.template)
    return by_name


def _is_template(text: str) -> bool:
    return "?principal" in text or "?resource" in text


def explain(
    *,
    allowed: bool,
    determining: Sequence[str],
    sources: Sequence[cedar.PolicySource],
    links: Sequence[cedar.Link],
    principal: tuple[str, str],
    roles: Iterable[str],
    action: str,
    resource: tuple[str, str],
) -> Explanation:
    texts = _texts(sources, links)
    ests = impact.policy_jsons(sources)
    links_by_id = {link.link_id: link for link in links}

    def effect(name: str) -> str:
        template = links_by_id[name].template if name in links_by_id else name
        return str(ests.get(template, {}).get("effect", "permit"))

    found = tuple(ExplainedPolicy(name, texts.get(name, ("", ""))[0], effect(name)) for name in determining)
    if allowed or determining:
        return Explanation(found)
    roles = frozenset(roles)
    closest = []
    heads = [impact.head_of(name, est) for name, est in ests.items() if not _is_template(texts[name][0])]
    for link in links:
        est = ests.get(link.template)
        if est is not None:
            heads.append(impact.head_of(link.link_id, est, {"?principal": link.principal, "?resource": link.resource}))
    for head in heads:
        if effect(head.label) != "permit":
            continue
        if head.admits_action(action) and head.scope.admits(*resource) and head.admits_principal(principal, roles):
            closest.append(ExplainedPolicy(head.label, texts[head.label][0], "permit"))
    return Explanation((), True, tuple(sorted(closest, key=lambda policy: policy.name)))
