"""The per-process policy cache and the decision function behind `authorize()`.

Each process keeps the parsed Cedar policy set keyed by the policy version
(the `PolicyState` row). It re-reads the version when told to (a Redis
notification via `watch.py`, or a save in this process) and at most every
POLICY_POLL_INTERVAL seconds on its own, so a process that missed a
notification is stale for at most that long. Decisions are cached for
POLICY_DECISION_CACHE_SECONDS, keyed by version, principal, resource and
context; a version change empties the cache.

An uncached decision is cheap too (bench/policies.py): Cedar sees only the
slice of the set that can apply to the request (`cedar.PolicyIndex`), and the
entity JSON of each principal and resource, the parsed entities of a pair and
the context JSON are kept per version, so a decision serialises nothing it
made before. `decide_many` answers several requests of one principal with one
Cedar call per slice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.utils import timezone

from policies import cedar, metrics, selectors
from policies.auditing import audit_without_waiting
from webconnect.identity import Decision, Principal, Resource

logger = logging.getLogger(__name__)

# Context keys a caller may pass; anything else is ignored (the schema is closed,
# so an unknown key would otherwise turn every decision into an error).
CONTEXT_KEYS = ("client_ip", "now")
_MAX_CACHED_DECISIONS = 20_000
_MAX_CACHED_ROLES = 10_000
_MAX_CACHED_SLICES = 500  # parsed sets of tens of KiB each
_MAX_CACHED_ENTITIES = 10_000
_MAX_CACHED_ENTITY_SETS = 5_000  # parsed (principal, resource) pairs, a few KiB each
_AUDIT_EVENTS_PER_ACTOR = 20  # denial events per actor per POLICY_AUDIT_INTERVAL


@dataclass(frozen=True)
class Snapshot:
    version: int
    policy_set: Any
    names: tuple[str, ...]
    index: cedar.PolicyIndex | None = None
    # slice key -> the parsed slice (None: no policy applies); built on first use
    slices: dict[tuple[str, str | None], cedar.Parsed | None] = field(default_factory=dict, compare=False, repr=False)

    @property
    def whole(self) -> cedar.Parsed:
        return cedar.Parsed(self.policy_set, cedar.positional_ids(self.names))

    def slice(self, resource_type: str, resource_id: str) -> tuple[Any, cedar.Parsed | None]:
        """(slice key, the policies that can decide this request; None when none can)."""
        if self.index is None:
            return ("all",), self.whole
        key = self.index.slice_key(resource_type, resource_id)
        try:
            return key, self.slices[key]
        except KeyError:
            pass
        if len(self.slices) > _MAX_CACHED_SLICES:
            self.slices.clear()
        policy_set = self.slices[key] = self.index.slice_for(*key)
        return key, policy_set


_lock = threading.Lock()
_snapshot: Snapshot | None = None
_checked_at = 0.0
_stale = True
_decisions: dict[tuple[Any, ...], tuple[float, Decision]] = {}
_roles: dict[tuple[int, Any], tuple[str, ...]] = {}
# Serialised parts of requests, all under the version they were built for (roles are).
_principals: dict[tuple[Any, ...], tuple[dict[str, str], str]] = {}
_resources: dict[tuple[str, str, str], str] = {}
_entity_sets: dict[tuple[Any, ...], Any] = {}
_contexts: dict[tuple[Any, ...], str] = {}
_now_text: list[Any] = [0, ""]  # [second, its Cedar datetime]
# (user, action, resource) -> [window start, repeats]; ("actor", id) -> [window start, events, not audited]
_denials: dict[tuple[Any, ...], list[float]] = {}


def mark_stale() -> None:
    """Re-read the version on the next decision (a notification arrived)."""
    global _stale
    _stale = True


def loaded_version() -> int | None:
    snap = _snapshot
    return snap.version if snap is not None else None


def load_snapshot(version: int) -> Snapshot:
    sources = selectors.enabled_sources()
    links = selectors.share_links()
    policy_set = cedar.build_policy_set(sources, links)
    return Snapshot(version, policy_set, tuple(source.name for source in sources), cedar.build_index(sources, links))


def snapshot() -> Snapshot:
    """The parsed policy set for the current version (reloaded only when the version moved)."""
    global _snapshot, _checked_at, _stale
    snap = _snapshot
    now = time.monotonic()
    if snap is not None and not _stale and now - _checked_at < settings.POLICY_VERSION_CHECK_INTERVAL:
        return snap
    with _lock:
        if _snapshot is not None and not _stale and now - _checked_at < settings.POLICY_VERSION_CHECK_INTERVAL:
            return _snapshot
        _stale = False
        version = selectors.policy_version()
        if _snapshot is None or _snapshot.version != version:
            try:
                fresh = load_snapshot(version)
            except ValueError:
                # Saves are validated, so this means a row was edited behind the
                # admin's back: keep deciding with the last good set, loudly.
                logger.exception("policy version %s does not load; keeping version %s", version, loaded_version())
                if _snapshot is None:
                    raise
            else:
                _snapshot = fresh
                _forget_requests()
                logger.info("policy version %s loaded (%d policies)", version, len(fresh.names))
        _checked_at = now
        assert _snapshot is not None
        return _snapshot


def _user_roles(user: Any, version: int) -> tuple[str, ...]:
    if user is None or not user.is_authenticated:
        return ()
    simulated = getattr(user, "simulated_groups", None)  # the simulator's "as a member of" (never cached)
    if simulated is not None:
        return tuple(simulated)
    key = (version, user.pk)
    roles = _roles.get(key)
    if roles is None:
        # Group membership changes bump the policy version (receivers.py), so
        # roles cached under a version stay true for it.
        roles = tuple(user.groups.order_by("name").values_list("name", flat=True))
        if len(_roles) > _MAX_CACHED_ROLES:
            _roles.clear()
        _roles[key] = roles
    return roles


def _scopes(principal: Principal) -> frozenset[str]:
    scopes = principal.auth.scopes
    return frozenset(settings.OAUTH2_SCOPES) if scopes is None else scopes


def _client_ip(principal: Principal, context: dict[str, Any]) -> str | None:
    return context.get("client_ip") or principal.auth.client_ip


def _attrs_key(resource: Resource) -> str:
    return json.dumps(resource.attrs, sort_keys=True, default=str) if resource.attrs else ""


def _cache_key(
    version: int, principal: Principal, action: str, resource: Resource, context: dict[str, Any], attrs: str
) -> Any:
    user = principal.user
    authenticated = principal.is_authenticated
    return (
        version,
        user.pk if authenticated else None,
        bool(user.is_staff) if authenticated else False,
        principal.auth.method,
        principal.auth.scopes,
        _client_ip(principal, context),
        context.get("now"),
        action,
        resource.type,
        resource.id,
        attrs,
    )


def _cached(key: Any) -> Decision | None:
    hit = _decisions.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    return None


def _remember(key: Any, decision: Decision, ttl: float) -> None:
    if not decision.errors:
        if len(_decisions) > _MAX_CACHED_DECISIONS:
            _decisions.clear()
        _decisions[key] = (time.monotonic() + ttl, decision)


def decide(principal: Principal, action: str, resource: Resource, context: dict[str, Any]) -> Decision:
    """The Cedar decision for one request; raises on bad input (authorize() denies then)."""
    snap = snapshot()
    ttl = settings.POLICY_DECISION_CACHE_SECONDS
    attrs = _attrs_key(resource)
    key = _cache_key(snap.version, principal, action, resource, context, attrs) if ttl > 0 else None
    if key is not None:
        decision = _cached(key)
        if decision is not None:
            _count(decision, cached=True)
            if not decision.allowed:
                _record_denial(principal, action, resource, decision)
            return decision
    decision = evaluate(snap, principal, action, resource, context, attrs=attrs)
    if key is not None:
        _remember(key, decision, ttl)
    return decision


def decide_many(
    principal: Principal, requests: Sequence[tuple[str, Resource]], context: dict[str, Any] | None = None
) -> list[Decision]:
    """`decide` for several (action, resource) requests of one principal, in order.

    What the decision cache lacks is evaluated together: one parsed entity set
    (the principal and every resource) and one Cedar call per policy slice. The
    caller applies token scopes, as authorize() does.
    """
    context = context or {}
    snap = snapshot()
    ttl = settings.POLICY_DECISION_CACHE_SECONDS
    decisions: list[Decision | None] = [None] * len(requests)
    keys: list[Any] = [None] * len(requests)
    missing: list[tuple[int, str, Resource, str]] = []
    for position, (action, resource) in enumerate(requests):
        attrs = _attrs_key(resource)
        if ttl > 0:
            keys[position] = key = _cache_key(snap.version, principal, action, resource, context, attrs)
            hit = _cached(key)
            if hit is not None:
                _count(hit, cached=True)
                if not hit.allowed:
                    _record_denial(principal, action, resource, hit)
                decisions[position] = hit
                continue
        missing.append((position, action, resource, attrs))
    if missing:
        uid, principal_text = _principal_json(principal, snap.version)
        context_text = _context_json(principal, context, snap.index)
        resource_texts: dict[tuple[str, str], str] = {}
        by_slice: dict[Any, tuple[Any, list[tuple[int, str, Resource, dict[str, Any]]]]] = {}
        for position, action, resource, attrs in missing:
            resource_id = str(resource.id)
            text = _resource_json(resource, resource_id, attrs)
            if resource_texts.setdefault((resource.type, resource_id), text) != text:
                # The same uid with other attrs cannot join this entity set: on its own.
                decisions[position] = evaluate(snap, principal, action, resource, context, attrs=attrs)
                continue
            slice_key, policy_set = snap.slice(resource.type, resource_id)
            if policy_set is None:
                decisions[position] = _decision(cedar.NO_POLICY, principal, action, resource, audit=True)
                continue
            request = cedar.request_dict(uid, action, resource.type, resource_id, context_text)
            by_slice.setdefault(slice_key, (policy_set, []))[1].append((position, action, resource, request))
        if by_slice:
            entities = cedar.entity_set([principal_text, *resource_texts.values()])
            for policy_set, batch in by_slice.values():
                outcomes = cedar.evaluate_many(policy_set, [request for *_rest, request in batch], entities)
                for (position, action, resource, _request), outcome in zip(batch, outcomes, strict=True):
                    decisions[position] = _decision(outcome, principal, action, resource, audit=True)
        for position, *_rest in missing:
            if keys[position] is not None:
                _remember(keys[position], decisions[position], ttl)  # type: ignore[arg-type]
    return [decision for decision in decisions if decision is not None]


def evaluate(
    snap: Snapshot,
    principal: Principal,
    action: str,
    resource: Resource,
    context: dict[str, Any],
    *,
    audit: bool = True,
    strict: bool = False,
    attrs: str | None = None,
) -> Decision:
    """Evaluate without the decision cache (the simulator: without auditing, strict about the schema).

    `strict` evaluates the whole set with the full request checked against the
    schema, the reference the hot path's slices and cached parts must agree with.
    """
    resource_id = str(resource.id)
    if strict:
        full = cedar.build_request(
            user=principal.user,
            roles=_user_roles(principal.user, snap.version),
            action=action,
            resource_type=resource.type,
            resource_id=resource_id,
            resource_attrs=resource.attrs,
            client_ip=_client_ip(principal, context),
            token_scopes=_scopes(principal),
            auth_method=principal.auth.method,
            now=context.get("now") or timezone.now(),
        )
        outcome = cedar.evaluate(snap.policy_set, full, strict=True, ids=snap.whole.ids)
        return _decision(outcome, principal, action, resource, audit=audit)
    if attrs is None:
        attrs = _attrs_key(resource)
    resource_text = _resource_json(resource, resource_id, attrs)  # bad attrs raise even when no policy applies
    _slice_key, policy_set = snap.slice(resource.type, resource_id)
    if policy_set is None:
        return _decision(cedar.NO_POLICY, principal, action, resource, audit=audit)
    uid, principal_text = _principal_json(principal, snap.version)
    pair = (principal_text, resource.type, resource_id, attrs)
    entities = _entity_sets.get(pair)
    if entities is None:
        if len(_entity_sets) > _MAX_CACHED_ENTITY_SETS:
            _entity_sets.clear()
        entities = _entity_sets[pair] = cedar.entity_set([principal_text, resource_text])
    request = cedar.request_dict(uid, action, resource.type, resource_id, _context_json(principal, context, snap.index))
    [outcome] = cedar.evaluate_many(policy_set, [request], entities)
    return _decision(outcome, principal, action, resource, audit=audit)


def _principal_json(principal: Principal, version: int) -> tuple[dict[str, str], str]:
    user = principal.user
    if not principal.is_authenticated:
        key: tuple[Any, ...] = (version, None)
    else:
        key = (version, user.pk, user.get_username(), bool(user.is_staff))
    cached = _principals.get(key)
    if cached is None:
        if len(_principals) > _MAX_CACHED_ENTITIES:
            _principals.clear()
        roles = _user_roles(user, version) if principal.is_authenticated else ()
        cached = _principals[key] = cedar.principal_json(user if principal.is_authenticated else None, roles)
    return cached


def _resource_json(resource: Resource, resource_id: str, attrs: str) -> str:
    key = (resource.type, resource_id, attrs)
    text = _resources.get(key)
    if text is None:
        if len(_resources) > _MAX_CACHED_ENTITIES:
            _resources.clear()
        text = _resources[key] = cedar.resource_json(resource.type, resource_id, resource.attrs)
    return text


def _now_cedar(now: Any) -> str:
    if now is not None:
        return cedar.cedar_datetime(now)
    second = int(time.time())
    if _now_text[0] != second:
        _now_text[:] = [second, cedar.cedar_datetime(timezone.now())]
    return str(_now_text[1])


def _context_json(principal: Principal, context: dict[str, Any], index: cedar.PolicyIndex | None) -> str:
    keys = index.context_keys if index is not None else None
    now = _now_cedar(context.get("now")) if keys is None or "now" in keys else ""
    auth = principal.auth
    key = (_client_ip(principal, context), auth.scopes, auth.method, now, keys)
    text = _contexts.get(key)
    if text is None:
        if len(_contexts) > _MAX_CACHED_ENTITIES:
            _contexts.clear()
        text = _contexts[key] = cedar.context_json(
            client_ip=key[0], token_scopes=_scopes(principal), auth_method=auth.method, now=now, keys=keys
        )
    return text


_counters: dict[tuple[str, str], Any] = {}


def _count(decision: Decision, *, cached: bool, error: bool = False) -> None:
    labels = ("error" if error else "allow" if decision.allowed else "deny", "yes" if cached else "no")
    counter = _counters.get(labels)
    if counter is None:
        counter = _counters[labels] = metrics.decisions.labels(result=labels[0], cached=labels[1])
    counter.inc()


def _decision(
    outcome: cedar.Outcome, principal: Principal, action: str, resource: Resource, *, audit: bool
) -> Decision:
    if outcome.errors:
        # Cedar skips a policy that errors, which could let a broken forbid
        # through: any evaluation error denies here.
        logger.warning("policy evaluation errors for %s %s:%s: %s", action, resource.type, resource.id, outcome.errors)
        decision = Decision(False, policies=outcome.policies, errors=outcome.errors, reason="evaluation error")
        _count(decision, cached=False, error=True)
    elif outcome.allowed:
        decision = Decision(True, policies=outcome.policies, reason=f"permitted by {', '.join(outcome.policies)}")
        _count(decision, cached=False)
    else:
        reason = f"forbidden by {', '.join(outcome.policies)}" if outcome.policies else "no policy permits this"
        decision = Decision(False, policies=outcome.policies, reason=reason)
        _count(decision, cached=False)
    if audit and not decision.allowed:
        _record_denial(principal, action, resource, decision)
    return decision


def _record_denial(principal: Principal, action: str, resource: Resource, decision: Decision) -> None:
    """Audit a denial, at most once per (user, action, resource) per POLICY_AUDIT_INTERVAL.

    A client retrying a forbidden subscription in a loop must not flood the
    audit chain: repeats within the window are counted and reported with the
    next event for that key.
    """
    user = principal.user if principal.is_authenticated else None
    key = (user.pk if user else None, action, resource.type, resource.id)
    now = time.monotonic()
    entry = _denials.get(key)
    if entry is not None and now - entry[0] < settings.POLICY_AUDIT_INTERVAL:
        entry[1] += 1
        return
    suppressed = int(entry[1]) if entry else 0
    if len(_denials) > _MAX_CACHED_DECISIONS:
        _denials.clear()
    _denials[key] = [now, 0]
    # Many different resources (a client probing channel names) would each get
    # an event: each actor also has a budget per window; over it, denials are
    # only counted and reported with that actor's next event.
    actor_key = ("actor", user.pk if user else principal.auth.client_ip)
    budget = _denials.get(actor_key)
    if budget is None or now - budget[0] >= settings.POLICY_AUDIT_INTERVAL:
        budget = _denials[actor_key] = [now, 0, 0]
    budget[1] += 1
    if budget[1] > _AUDIT_EVENTS_PER_ACTOR:
        budget[2] += 1
        return
    suppressed_for_actor = int(budget[2])
    budget[2] = 0
    try:
        audit_without_waiting(
            action="policy.denied",
            outcome="denied",
            actor=user,
            target=f"{resource.type}::{resource.id}",
            client_ip=principal.auth.client_ip,
            details={
                "action": action,
                "reason": decision.reason,
                "policies": list(decision.policies),
                "errors": list(decision.errors),
                "repeats_since_last": suppressed,
                "other_denials_not_audited": suppressed_for_actor,
            },
        )
    except Exception:
        logger.exception("could not audit a denial")


def clear_caches() -> None:
    """Forget everything (tests; a version change does this by itself)."""
    global _snapshot, _stale
    with _lock:
        _snapshot = None
        _stale = True
        _forget_requests()
        _denials.clear()


def _forget_requests() -> None:
    """Drop what was built for the previous version: decisions, roles and request parts."""
    for cache in (_decisions, _roles, _principals, _resources, _entity_sets, _contexts):
        cache.clear()
