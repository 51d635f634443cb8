"""What a policy change would do: the decisions that change, before it is saved.

The current and the proposed policy sets are evaluated side by side over the
real entity store: every active user and anonymous, times the actions of the schema, times
the resources that exist (documents and dashboards, registered by their apps
with `register_resources`; channels that have history or live subscribers in
this process; every user's personal channel). Only the requests that a changed
policy's head (principal, action, resource scope) can match are evaluated: a
request no changed policy applies to is decided by the same policies either
way. Past `POLICY_IMPACT_MAX_DECISIONS` requests, principals (then resources)
are sampled with a fixed seed and the result says so, with the counts.

Requests are made as a browser session would make them: every scope, an
unknown client IP, the current time. Live subscriptions are re-evaluated with
their own principal and context (token scopes, auth method, client IP), as
the re-check after a save does.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cedarpy
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from policies import cedar, selectors
from policies.models import AccessPolicy
from webconnect.identity import Principal, Resource
from webconnect.realtime.hub import history_channels, live_subscribers
from webconnect.realtime.selectors import namespaces_all

EXAMPLES = 10  # per group
TOP_PRINCIPALS = 20
_CHUNK = 200  # resources per parsed entity set

# --- Where resources come from -------------------------------------------------------

ResourceSource = Callable[[], Iterable[Resource]]
_sources: dict[str, ResourceSource] = {}


def register_resources(resource_type: str, source: ResourceSource) -> None:
    """An app says how to list its resources (as it passes them to authorize()); from AppConfig.ready()."""
    _sources[resource_type] = source


def _actions_by_type() -> dict[str, tuple[str, ...]]:
    """The actions the schema lets apply to each resource type."""
    found: dict[str, list[str]] = {}
    text = re.sub(r"//[^\n]*", "", cedar.schema_text())
    for names, body in re.findall(r"action\s+([\w\s,]+?)\s+appliesTo\s*\{(.*?)\};", text, re.S):
        resources = re.search(r"resource:\s*\[([^\]]*)\]", body)
        for type_ in re.findall(r"\w+", resources.group(1) if resources else ""):
            for name in re.findall(r"\w+", names):
                if name not in found.setdefault(type_, []):
                    found[type_].append(name)
    return {type_: tuple(actions) for type_, actions in found.items()}


ACTIONS_BY_TYPE = _actions_by_type()


# --- Heads: which requests a policy can apply to ----------------------------------------


@dataclass(frozen=True)
class Head:
    """A policy's head read off its JSON form; None fields admit anything."""

    label: str
    principal: dict[str, Any]
    actions: frozenset[str] | None
    scope: cedar.Scope
    slots: dict[str, tuple[str, str]] = field(default_factory=dict)

    def admits_action(self, action: str) -> bool:
        return self.actions is None or action in self.actions

    def admits_principal(self, uid: tuple[str, str], roles: frozenset[str]) -> bool:
        clause = self.principal
        op = clause.get("op")
        if op == "All" or op is None:
            return True
        if op == "is" and uid[0] != clause.get("entity_type"):
            return False
        inner = clause if op in {"==", "in"} else clause.get("in")
        if op == "is" and not isinstance(inner, dict):
            return True
        target = cedar._est_uid(inner or {}, self.slots)
        if target is None:
            return True  # not understood: admit (evaluating more is only slower)
        if target == uid:
            return True
        return op != "==" and target[0] == "Role" and target[1] in roles


def _actions(clause: dict[str, Any]) -> frozenset[str] | None:
    if clause.get("op") == "==" and isinstance(clause.get("entity"), dict):
        return frozenset([str(clause["entity"].get("id"))])
    if clause.get("op") == "in":
        entities = clause.get("entities") or ([clause["entity"]] if isinstance(clause.get("entity"), dict) else [])
        return frozenset(str(entity.get("id")) for entity in entities) or None
    return None


def head_of(label: str, est: dict[str, Any], slots: dict[str, tuple[str, str]] | None = None) -> Head:
    slots = slots or {}
    return Head(label, est.get("principal") or {}, _actions(est.get("action") or {}), cedar.scope_of(est, slots), slots)


def policy_jsons(sources: Sequence[cedar.PolicySource]) -> dict[str, dict[str, Any]]:
    """Each policy's (or template's) JSON form by name."""
    if not sources:
        return {}
    parsed = json.loads(cedarpy.policies_to_json_str("".join(cedar.annotated(source) for source in sources)))
    found: dict[str, dict[str, Any]] = {}
    for group in ("staticPolicies", "templates"):
        for est in (parsed.get(group) or {}).values():
            found[str(est.get("annotations", {}).get("id"))] = est
    return found


@dataclass(frozen=True)
class PolicySet:
    """A whole policy set as the engine loads it: the enabled sources and the share links."""

    sources: tuple[cedar.PolicySource, ...]
    links: tuple[cedar.Link, ...]

    @classmethod
    def current(cls) -> PolicySet:
        return cls(tuple(selectors.enabled_sources()), tuple(selectors.share_links()))


def changed_heads(current: PolicySet, proposed: PolicySet) -> tuple[list[str], list[Head]]:
    """The names of the changed policies and shares, and the heads of their old and new forms."""
    before = {source.name: source for source in current.sources}
    after = {source.name: source for source in proposed.sources}
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    old_ests = policy_jsons([before[name] for name in changed if name in before])
    new_ests = policy_jsons([after[name] for name in changed if name in after])
    heads = [head_of(name, est) for ests in (old_ests, new_ests) for name, est in ests.items()]
    changed_templates = set(changed)
    old_links = {link.link_id: link for link in current.links}
    new_links = {link.link_id: link for link in proposed.links}
    all_templates = policy_jsons(
        [s for s in current.sources if any(link.template == s.name for link in current.links)]
        + [s for s in proposed.sources if any(link.template == s.name for link in proposed.links)]
    )
    changed_links: list[str] = []
    for link_id in sorted(old_links.keys() | new_links.keys()):
        old, new = old_links.get(link_id), new_links.get(link_id)
        if old == new and (old is None or old.template not in changed_templates):
            continue
        changed_links.append(link_id)
        for link, ests in ((old, old_ests), (new, new_ests)):
            if link is None:
                continue
            est = ests.get(link.template) or all_templates.get(link.template)
            if est is not None:
                slots = {"?principal": link.principal, "?resource": link.resource}
                heads.append(head_of(link_id, est, slots))
    return changed + changed_links, heads


# --- The entity store ---------------------------------------------------------------


@dataclass(frozen=True)
class Who:
    uid: tuple[str, str]
    label: str
    entity_json: str
    roles: frozenset[str]


def _principals() -> list[Who]:
    users = get_user_model().objects.filter(is_active=True).order_by("pk").prefetch_related("groups")
    found = []
    for user in users:
        roles = sorted(group.name for group in user.groups.all())
        uid, text = cedar.principal_json(user, roles)
        found.append(
            Who((uid["type"], uid["id"]), f'{user.get_username()} (User::"{user.pk}")', text, frozenset(roles))
        )
    uid, text = cedar.principal_json(None, ())
    found.append(Who((uid["type"], uid["id"]), "anonymous", text, frozenset()))
    return found


def live_channel_subscriptions() -> list[tuple[str, Principal]]:
    """(channel, principal) of every live /ws/ subscription in this process."""
    return [
        (channel, principal)
        for channel, subscriber in live_subscribers()
        if isinstance(principal := getattr(subscriber, "principal", None), Principal)
    ]


def _history_channels() -> set[str]:
    """Channels that have history: Redis streams, or this process's memory."""
    return history_channels()


def _channel_resources(users: Iterable[Who], live: Iterable[str]) -> list[Resource]:
    namespaces = namespaces_all()
    names = set(live) | _history_channels()
    if "user" in namespaces:
        names |= {f"user.{who.uid[1]}" for who in users if who.uid[0] == "User"}
    resources = []
    for name in sorted(names):
        namespace = namespaces.get(name.split(".", 1)[0])
        if namespace is not None and "." in name:
            resources.append(Resource("Channel", name, namespace.attrs()))
    return resources


def entity_store(live: Iterable[str] = ()) -> tuple[list[Who], list[Resource]]:
    principals = _principals()
    resources = _channel_resources(principals, live)
    for resource_type in sorted(_sources):
        resources.extend(_sources[resource_type]())
    return principals, resources


# --- The computation ------------------------------------------------------------------


@dataclass
class Change:
    principal: str
    action: str
    resource: str


@dataclass
class Group:
    change: str  # "gains" or "loses"
    principal_kind: str  # "User" or "Anonymous"
    resource_kind: str
    count: int = 0
    principals: set[str] = field(default_factory=set)
    examples: list[Change] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "change": self.change,
            "principal_kind": self.principal_kind,
            "resource_kind": self.resource_kind,
            "count": self.count,
            "principals": len(self.principals),
            "examples": [vars(example) for example in self.examples],
        }


@dataclass
class Impact:
    changed_policies: list[str]
    principals: int  # evaluated
    principals_total: int
    resources: int
    resources_total: int
    decisions: int  # requests evaluated, per set
    sampled: bool
    groups: list[Group]
    by_principal: dict[str, dict[str, int]]
    live_ending: list[Change]
    live_total: int
    seconds: float
    context: str = "a browser session (every scope) from an unknown IP, now"

    @property
    def gains(self) -> int:
        return sum(group.count for group in self.groups if group.change == "gains")

    @property
    def loses(self) -> int:
        return sum(group.count for group in self.groups if group.change == "loses")

    @property
    def empty(self) -> bool:
        return not self.groups and not self.live_ending

    def sampling_note(self) -> str:
        if not self.sampled:
            return ""
        return (
            f"sampled: {self.principals} of {self.principals_total} principals and {self.resources} of "
            f"{self.resources_total} resources were evaluated (POLICY_IMPACT_MAX_DECISIONS="
            f"{settings.POLICY_IMPACT_MAX_DECISIONS}); the counts are for the sample"
        )

    def summary(self) -> dict[str, Any]:
        """What the audit event keeps."""
        return {
            "changed_policies": self.changed_policies,
            "gains": self.gains,
            "loses": self.loses,
            "live_subscriptions_ending": len(self.live_ending),
            "live_examples": [vars(change) for change in self.live_ending[:EXAMPLES]],
            "groups": [
                {key: value for key, value in group.as_json().items() if key != "examples"} for group in self.groups
            ],
            "examples": [
                vars(example) | {"change": group.change} for group in self.groups for example in group.examples[:3]
            ],
            "evaluated": self.evaluated(),
        }

    def evaluated(self) -> dict[str, Any]:
        return {
            "principals": self.principals,
            "principals_total": self.principals_total,
            "resources": self.resources,
            "resources_total": self.resources_total,
            "decisions": self.decisions,
            "sampled": self.sampled,
            "note": self.sampling_note(),
            "context": self.context,
            "seconds": round(self.seconds, 3),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "changed_policies": self.changed_policies,
            "gains": self.gains,
            "loses": self.loses,
            "groups": [group.as_json() for group in self.groups],
            "by_principal": [
                {"principal": name, **counts}
                for name, counts in sorted(
                    self.by_principal.items(), key=lambda item: (-sum(item[1].values()), item[0])
                )[:TOP_PRINCIPALS]
            ],
            "live_subscriptions_ending": len(self.live_ending),
            "live_subscriptions": self.live_total,
            "live_examples": [vars(change) for change in self.live_ending[:EXAMPLES]],
            "evaluated": self.evaluated(),
        }


class _Evaluator:
    """One policy set's slices, parsed once per slice key."""

    def __init__(self, policy_set: PolicySet) -> None:
        self.index = cedar.build_index(policy_set.sources, policy_set.links)
        self.slices: dict[Any, cedar.Parsed | None] = {}

    def slice(self, resource: Resource) -> tuple[Any, cedar.Parsed | None]:
        key = self.index.slice_key(resource.type, str(resource.id))
        if key not in self.slices:
            self.slices[key] = self.index.slice_for(*key)
        return key, self.slices[key]

    def decide(self, requests: list[tuple[Resource, dict[str, Any]]], entities: Any) -> list[bool]:
        """Allowed (no evaluation error, as the engine decides) per request, in order."""
        answers = [False] * len(requests)
        by_slice: dict[Any, tuple[cedar.Parsed, list[int]]] = {}
        for position, (resource, _request) in enumerate(requests):
            key, parsed = self.slice(resource)
            if parsed is not None:
                by_slice.setdefault(key, (parsed, []))[1].append(position)
        for parsed, positions in by_slice.values():
            outcomes = cedar.evaluate_many(parsed, [requests[p][1] for p in positions], entities)
            for position, outcome in zip(positions, outcomes, strict=True):
                answers[position] = outcome.allowed and not outcome.errors
        return answers


def _sample(items: list[Any], keep: int, seed: int) -> list[Any]:
    if keep >= len(items):
        return items
    chosen = sorted(random.Random(seed).sample(range(len(items)), keep))
    return [items[index] for index in chosen]


def compute_impact(
    current: PolicySet,
    proposed: PolicySet,
    *,
    principals: list[Who] | None = None,
    resources: list[Resource] | None = None,
    live: list[tuple[str, Principal]] | None = None,
    max_decisions: int | None = None,
) -> Impact:
    """The decisions that differ between `current` and `proposed` (by default over the real entity store)."""
    started = time.monotonic()
    budget = max_decisions if max_decisions is not None else settings.POLICY_IMPACT_MAX_DECISIONS
    live = live_channel_subscriptions() if live is None else live
    if principals is None or resources is None:
        found_principals, found_resources = entity_store(channel for channel, _principal in live)
        principals = found_principals if principals is None else principals
        resources = found_resources if resources is None else resources
    changed, heads = changed_heads(current, proposed)

    # Which (resource, action) pairs each head reaches, and which principals.
    head_principals = [
        frozenset(n for n, who in enumerate(principals) if head.admits_principal(who.uid, who.roles)) for head in heads
    ]

    def plan(chosen: list[Who], kept: list[Resource]) -> tuple[list[tuple[Resource, str, frozenset[int]]], int]:
        index = {id(who): n for n, who in enumerate(principals)}
        allowed = frozenset(index[id(who)] for who in chosen)
        unions: dict[frozenset[int], frozenset[int]] = {}
        pairs = []
        total = 0
        for resource in kept:
            rid = str(resource.id)
            reaching = [n for n, head in enumerate(heads) if head.scope.admits(resource.type, rid)]
            if not reaching:
                continue
            for action in ACTIONS_BY_TYPE.get(resource.type, ()):
                these = frozenset(n for n in reaching if heads[n].admits_action(action))
                if not these:
                    continue
                if these not in unions:
                    unions[these] = frozenset().union(*(head_principals[n] for n in these)) & allowed
                who = unions[these]
                if who:
                    pairs.append((resource, action, who))
                    total += len(who)
        return pairs, total

    chosen, kept = principals, resources
    pairs, total = plan(chosen, kept)
    sampled = False
    if total > budget:
        sampled = True
        # Sample among the principals some changed policy can reach: the others add no request.
        reached = frozenset().union(*head_principals)
        candidates = [who for n, who in enumerate(principals) if n in reached]
        keep = max(1, int(len(candidates) * budget / total))
        chosen = _sample(candidates, keep, seed=1)
        pairs, total = plan(chosen, kept)
        if total > budget:
            kept = _sample(resources, max(1, int(len(resources) * budget / total)), seed=2)
            pairs, total = plan(chosen, kept)

    now = cedar.cedar_datetime(timezone.now())
    before, after = _Evaluator(current), _Evaluator(proposed)
    # Only the context attributes some policy of either set reads: Cedar parses the context per request.
    keys = before.index.context_keys, after.index.context_keys
    context = cedar.context_json(
        client_ip=None,
        token_scopes=settings.OAUTH2_SCOPES,
        auth_method="session",
        now=now,
        keys=None if None in keys else frozenset().union(*keys),  # type: ignore[arg-type]
    )
    groups: dict[tuple[str, str, str], Group] = {}
    by_principal: dict[str, dict[str, int]] = {}
    principal_texts = [who.entity_json for who in principals]
    for start in range(0, len(pairs), _CHUNK):
        chunk = pairs[start : start + _CHUNK]
        texts = {}
        for resource, _action, _who in chunk:
            texts[(resource.type, str(resource.id))] = cedar.resource_json(
                resource.type, str(resource.id), resource.attrs
            )
        entities = cedar.entity_set([*principal_texts, *texts.values()])
        requests: list[tuple[Resource, dict[str, Any]]] = []
        meta: list[tuple[Who, str, Resource]] = []
        for resource, action, who_indexes in chunk:
            for n in sorted(who_indexes):
                who = principals[n]
                uid = {"type": who.uid[0], "id": who.uid[1]}
                requests.append((resource, cedar.request_dict(uid, action, resource.type, str(resource.id), context)))
                meta.append((who, action, resource))
        for (who, action, resource), was, will in zip(
            meta, before.decide(requests, entities), after.decide(requests, entities), strict=True
        ):
            if was == will:
                continue
            change = "gains" if will else "loses"
            group = groups.setdefault((change, who.uid[0], resource.type), Group(change, who.uid[0], resource.type))
            group.count += 1
            group.principals.add(who.label)
            if len(group.examples) < EXAMPLES:
                group.examples.append(Change(who.label, action, f'{resource.type}::"{resource.id}"'))
            counts = by_principal.setdefault(who.label, {"gains": 0, "loses": 0})
            counts[change] += 1

    live_ending = _live_ending(live, before, after, now)
    return Impact(
        changed_policies=changed,
        principals=len(chosen),
        principals_total=len(principals),
        resources=len(kept),
        resources_total=len(resources),
        decisions=total,
        sampled=sampled,
        groups=sorted(groups.values(), key=lambda g: (g.change != "loses", g.principal_kind, g.resource_kind)),
        by_principal=by_principal,
        live_ending=live_ending,
        live_total=len(live),
        seconds=time.monotonic() - started,
    )


def _live_ending(live: list[tuple[str, Principal]], before: _Evaluator, after: _Evaluator, now: str) -> list[Change]:
    """Live subscriptions allowed now and denied by the proposed set, each with its own context."""
    namespaces = namespaces_all()
    ending = []
    for channel, principal in live:
        namespace = namespaces.get(channel.split(".", 1)[0])
        if namespace is None:
            continue
        resource = Resource("Channel", channel, namespace.attrs())
        user = principal.user if principal.is_authenticated else None
        roles = sorted(user.groups.values_list("name", flat=True)) if user is not None else []
        uid, principal_text = cedar.principal_json(user, roles)
        scopes = principal.auth.scopes
        context = cedar.context_json(
            client_ip=principal.auth.client_ip,
            token_scopes=settings.OAUTH2_SCOPES if scopes is None else scopes,
            auth_method=principal.auth.method,
            now=now,
            keys=None,
        )
        entities = cedar.entity_set([principal_text, cedar.resource_json("Channel", channel, resource.attrs)])
        request = [(resource, cedar.request_dict(uid, "subscribe", "Channel", channel, context))]
        if before.decide(request, entities)[0] and not after.decide(request, entities)[0]:
            label = f'{user.get_username()} (User::"{user.pk}")' if user is not None else "anonymous"
            ending.append(Change(label, "subscribe", f'Channel::"{channel}"'))
    return ending


# --- Proposed sets ----------------------------------------------------------------------


def proposed_with_edit(*, name: str, text: str, enabled: bool, pk: int | None) -> PolicySet:
    """The enabled set as it would be with one policy saved (as AccessPolicy.set_errors builds it)."""
    current = PolicySet.current()
    old_name = AccessPolicy.objects.filter(pk=pk).values_list("name", flat=True).first() if pk else None
    sources = [source for source in current.sources if source.name not in {name, old_name}]
    if enabled:
        sources.append(cedar.PolicySource(name, text))
    links = current.links
    if old_name is not None:
        links = tuple(
            cedar.Link(link.link_id, name, link.principal, link.resource) if link.template == old_name else link
            for link in links
            if enabled or link.template != old_name
        )
    return PolicySet(tuple(sorted(sources, key=lambda source: source.name)), links)


def proposed_from_document(data: dict[str, Any]) -> PolicySet:
    """The set an import file would install (already validated by the caller)."""
    sources = [
        cedar.PolicySource(row["name"], row["text"])
        for row in data.get("access_policies") or []
        if bool(row.get("enabled", True))
    ]
    names = {source.name for source in sources}
    links = tuple(link for link in selectors.share_links(enabled_only=False) if link.template in names)
    return PolicySet(tuple(sorted(sources, key=lambda source: source.name)), links)
