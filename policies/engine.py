"""The per-process policy cache and the decision function behind `authorize()`.

Each process keeps the parsed Cedar policy set keyed by the policy version
(the `PolicyState` row). It re-reads the version when told to (a Redis
notification via `watch.py`, or a save in this process) and at most every
POLICY_POLL_INTERVAL seconds on its own, so a process that missed a
notification is stale for at most that long. Decisions are cached for
POLICY_DECISION_CACHE_SECONDS, keyed by version, principal, resource and
context; a version change empties the cache.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
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
_AUDIT_EVENTS_PER_ACTOR = 20  # denial events per actor per POLICY_AUDIT_INTERVAL


@dataclass(frozen=True)
class Snapshot:
    version: int
    policy_set: Any
    names: tuple[str, ...]


_lock = threading.Lock()
_snapshot: Snapshot | None = None
_checked_at = 0.0
_stale = True
_decisions: dict[tuple[Any, ...], tuple[float, Decision]] = {}
_roles: dict[tuple[int, Any], tuple[str, ...]] = {}
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
    return Snapshot(version, cedar.build_policy_set(sources, links), tuple(source.name for source in sources))


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
                _decisions.clear()
                _roles.clear()
                logger.info("policy version %s loaded (%d policies)", version, len(fresh.names))
        _checked_at = now
        assert _snapshot is not None
        return _snapshot


def _user_roles(user: Any, version: int) -> tuple[str, ...]:
    if user is None or not user.is_authenticated:
        return ()
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


def _cache_key(version: int, principal: Principal, action: str, resource: Resource, context: dict[str, Any]) -> Any:
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
        json.dumps(resource.attrs, sort_keys=True, default=str) if resource.attrs else "",
    )


def decide(principal: Principal, action: str, resource: Resource, context: dict[str, Any]) -> Decision:
    """The Cedar decision for one request; raises on bad input (authorize() denies then)."""
    snap = snapshot()
    ttl = settings.POLICY_DECISION_CACHE_SECONDS
    key = _cache_key(snap.version, principal, action, resource, context) if ttl > 0 else None
    if key is not None:
        hit = _decisions.get(key)
        if hit is not None and hit[0] > time.monotonic():
            decision = hit[1]
            metrics.decisions.labels(result="allow" if decision.allowed else "deny", cached="yes").inc()
            if not decision.allowed:
                _record_denial(principal, action, resource, decision)
            return decision
    decision = evaluate(snap, principal, action, resource, context)
    if key is not None and not decision.errors:
        if len(_decisions) > _MAX_CACHED_DECISIONS:
            _decisions.clear()
        _decisions[key] = (time.monotonic() + ttl, decision)
    return decision


def evaluate(
    snap: Snapshot,
    principal: Principal,
    action: str,
    resource: Resource,
    context: dict[str, Any],
    *,
    audit: bool = True,
    strict: bool = False,
) -> Decision:
    """Evaluate without the decision cache (the simulator: without auditing, strict about the schema)."""

    request = cedar.build_request(
        user=principal.user,
        roles=_user_roles(principal.user, snap.version),
        action=action,
        resource_type=resource.type,
        resource_id=str(resource.id),
        resource_attrs=resource.attrs,
        client_ip=_client_ip(principal, context),
        token_scopes=_scopes(principal),
        auth_method=principal.auth.method,
        now=context.get("now") or timezone.now(),
    )
    outcome = cedar.evaluate(snap.policy_set, request, strict=strict)
    if outcome.errors:
        # Cedar skips a policy that errors, which could let a broken forbid
        # through: any evaluation error denies here.
        logger.warning("policy evaluation errors for %s %s:%s: %s", action, resource.type, resource.id, outcome.errors)
        decision = Decision(False, policies=outcome.policies, errors=outcome.errors, reason="evaluation error")
        metrics.decisions.labels(result="error", cached="no").inc()
    elif outcome.allowed:
        decision = Decision(True, policies=outcome.policies, reason=f"permitted by {', '.join(outcome.policies)}")
        metrics.decisions.labels(result="allow", cached="no").inc()
    else:
        reason = f"forbidden by {', '.join(outcome.policies)}" if outcome.policies else "no policy permits this"
        decision = Decision(False, policies=outcome.policies, reason=reason)
        metrics.decisions.labels(result="deny", cached="no").inc()
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
        _decisions.clear()
        _roles.clear()
        _denials.clear()
