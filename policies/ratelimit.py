"""Rate-limit policies enforced with the `limits` library (async API).

`check_rate` is installed as the platform's rate checker (`acheck_rate` in
webconnect.authorization). For each enabled RateLimitPolicy matching the
action, resource and user's roles it consumes one unit of each of its limits
under a key for its scope (user, IP, user+channel, channel, OAuth client).

- Shared storage: RATE_LIMIT_STORAGE_URI (Redis in production, with the
  redis-py client, so every process shares one budget; memory in development).
- In-process pre-check: the same limits on a per-process memory storage. A
  process's own count never exceeds the shared count, so when the local
  limiter already refuses, the shared one would too: the Redis round trip is
  skipped for a client that is hammering us.
- Redis unreachable: each process enforces the limits on its own (the local
  limiter decides), logged and counted in a metric, so limits degrade to
  per-process instead of vanishing or refusing everyone. Authorization does
  not depend on Redis and stays fail-closed.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from limits import RateLimitItem
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMoving
from limits.aio.strategies import RateLimiter as AsyncRateLimiter
from limits.aio.strategies import SlidingWindowCounterRateLimiter as AsyncSliding
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter, RateLimiter, SlidingWindowCounterRateLimiter

from policies import engine, metrics, selectors
from policies.auditing import audit_without_waiting
from policies.limitspec import parse_limits
from webconnect.identity import Principal, RateDecision, Resource

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rule:
    policy_id: int
    name: str
    scope: str
    actions: frozenset[str]
    pattern: str
    role: str | None
    items: tuple[RateLimitItem, ...]
    strategy: str
    spec: str

    def matches(self, action: str, resource: Resource) -> bool:
        if self.actions and action not in self.actions:
            return False
        return not self.pattern or fnmatch.fnmatchcase(str(resource.id), self.pattern)


@dataclass
class _Rules:
    version: int | None
    loaded_at: float
    rules: tuple[Rule, ...]


_rules = _Rules(None, 0.0, ())
_shared: dict[str, AsyncRateLimiter] = {}
_local: dict[str, RateLimiter] = {}
_clients: dict[int, str] = {}
_hits: dict[tuple[Any, ...], list[float]] = {}  # audit aggregation: key -> [window start, suppressed]
_AUDIT_EVENTS_PER_ACTOR = 20  # rate-limit events per actor per POLICY_AUDIT_INTERVAL


def _load_rules() -> _Rules:
    version = engine.snapshot().version
    rules = []
    for policy in selectors.rate_limit_policies():
        try:
            items = tuple(parse_limits(policy.limits))
        except ValueError:
            logger.exception("rate-limit policy %s has bad limits; skipped", policy.name)
            continue
        rules.append(
            Rule(
                policy.pk,
                policy.name,
                policy.scope,
                frozenset(policy.action_list()),
                policy.channel_pattern,
                policy.role.name if policy.role else None,
                items,
                policy.strategy,
                policy.limits,
            )
        )
    return _Rules(version, time.monotonic(), tuple(rules))


async def _current_rules() -> tuple[Rule, ...]:
    global _rules
    fresh = (
        _rules.version is not None
        and _rules.version == engine.loaded_version()
        and time.monotonic() - _rules.loaded_at < settings.POLICY_VERSION_CHECK_INTERVAL
    )
    if not fresh:
        _rules = await database_sync_to_async(_load_rules, thread_sensitive=False)()
    return _rules.rules


def _shared_limiter(strategy: str) -> AsyncRateLimiter:
    limiter = _shared.get(strategy)
    if limiter is None:
        uri = settings.RATE_LIMIT_STORAGE_URI
        options: dict[str, Any] = {}
        if uri.startswith(("redis://", "rediss://", "redis+")):
            # redis-py, not coredis (FIELD-NOTES: coredis 6 broke, redis-py is 2x faster).
            options = {"implementation": "redispy", "socket_timeout": 1, "socket_connect_timeout": 1}
        storage = storage_from_string(f"async+{uri}", **options)
        limiter = AsyncMoving(storage) if strategy == "moving" else AsyncSliding(storage)
        _shared[strategy] = limiter
    return limiter


def _local_limiter(strategy: str) -> RateLimiter:
    limiter = _local.get(strategy)
    if limiter is None:
        storage = MemoryStorage()
        limiter = MovingWindowRateLimiter(storage) if strategy == "moving" else SlidingWindowCounterRateLimiter(storage)
        _local[strategy] = limiter
    return limiter


def _shared_is_local() -> bool:
    return settings.RATE_LIMIT_STORAGE_URI.startswith("memory://")


async def _client_id(principal: Principal) -> str:
    token_id = principal.auth.token_id
    if token_id is None:
        return ""
    client = _clients.get(token_id)
    if client is None:

        def load() -> str:
            from oauth2_provider.models import get_access_token_model

            app_id = (
                get_access_token_model().objects.filter(pk=token_id).values_list("application_id", flat=True).first()
            )
            return f"app-{app_id}" if app_id else f"token-{token_id}"

        client = await database_sync_to_async(load, thread_sensitive=False)()
        if len(_clients) > 10_000:
            _clients.clear()
        _clients[token_id] = client
    return client


async def _identifiers(rule: Rule, principal: Principal, resource: Resource) -> tuple[str, ...] | None:
    user_key = f"user-{principal.user.pk}" if principal.is_authenticated else f"ip-{principal.auth.client_ip}"
    if rule.scope == "user":
        return (user_key,)
    if rule.scope == "ip":
        return (f"ip-{principal.auth.client_ip or 'unknown'}",)
    if rule.scope == "user_channel":
        return (user_key, f"res-{resource.type}-{resource.id}")
    if rule.scope == "channel":
        return (f"res-{resource.type}-{resource.id}",)
    if rule.scope == "client":
        client = await _client_id(principal)
        return (client,) if client else None  # sessions have no OAuth client
    return None


async def check_rate(principal: Principal, action: str, resource: Resource) -> RateDecision:
    """Consume one unit of every matching limit; refuse with retry_after when one is spent."""
    rules = [rule for rule in await _current_rules() if rule.matches(action, resource)]
    if not rules:
        return RateDecision(True)
    roles: tuple[str, ...] = ()
    if any(rule.role for rule in rules) and principal.is_authenticated:
        version = engine.loaded_version() or 0
        roles = await database_sync_to_async(engine._user_roles, thread_sensitive=False)(principal.user, version)
    keyed: list[tuple[Rule, tuple[str, ...], tuple[str, ...]]] = []
    for rule in rules:
        if rule.role and rule.role not in roles:
            continue
        identifiers = await _identifiers(rule, principal, resource)
        if identifiers is None:
            continue
        key = (settings.RATE_LIMIT_KEY_PREFIX, f"rl-{rule.strategy}", f"p{rule.policy_id}", *identifiers)
        keyed.append((rule, identifiers, key))
    # Every spent budget this process knows of first, before anything is counted: a client over its
    # own limit is refused without a Redis round trip and without spending other budgets (a flooding
    # user's refused publishes must not use up the channel's limit for everybody else).
    for rule, identifiers, key in keyed:
        for item in rule.items:
            wait = await _spent(rule, item, key)
            if wait is not None:
                metrics.rate_limited.labels(policy=rule.name).inc()
                await _record_hit(rule, item, principal, action, resource, identifiers)
                return RateDecision(False, retry_after=wait, limit=str(item))
    for rule, identifiers, key in keyed:
        for item in rule.items:
            refused_wait = await _hit(rule, item, key)
            if refused_wait is not None:
                metrics.rate_limited.labels(policy=rule.name).inc()
                await _record_hit(rule, item, principal, action, resource, identifiers)
                return RateDecision(False, retry_after=refused_wait, limit=str(item))
    return RateDecision(True)


async def _spent(rule: Rule, item: RateLimitItem, key: tuple[str, ...]) -> float | None:
    """Seconds until a retry may succeed if this process already knows `item` is spent, else None."""
    if _shared_is_local():
        shared = _shared_limiter(rule.strategy)
        if await shared.test(item, *key):
            return None
        return max((await shared.get_window_stats(item, *key)).reset_time - time.time(), 0.001)
    local = _local_limiter(rule.strategy)
    if local.test(item, *key):
        return None
    return max(local.get_window_stats(item, *key).reset_time - time.time(), 0.001)


async def _hit(rule: Rule, item: RateLimitItem, key: tuple[str, ...]) -> float | None:
    """None when allowed, else seconds until a retry may succeed."""
    if _shared_is_local():
        limiter = _shared_limiter(rule.strategy)
        if await limiter.hit(item, *key):
            return None
        stats = await limiter.get_window_stats(item, *key)
        return max(stats.reset_time - time.time(), 0.001)
    local = _local_limiter(rule.strategy)
    if not local.test(item, *key):
        return max(local.get_window_stats(item, *key).reset_time - time.time(), 0.001)
    local.hit(item, *key)
    shared = _shared_limiter(rule.strategy)
    try:
        if await shared.hit(item, *key):
            return None
        stats = await shared.get_window_stats(item, *key)
        return max(stats.reset_time - time.time(), 0.001)
    except Exception:
        # Redis is down: the local limiter (already counted above) decided.
        metrics.rate_limit_storage_errors.inc()
        logger.warning("rate-limit storage unreachable; enforcing %s per process", rule.name, exc_info=True)
        return None


async def _record_hit(
    rule: Rule,
    item: RateLimitItem,
    principal: Principal,
    action: str,
    resource: Resource,
    identifiers: tuple[str, ...],
) -> None:
    """Audit the first hit per (policy, key) per POLICY_AUDIT_INTERVAL; count the rest into the next."""
    key = (rule.policy_id, identifiers)
    now = time.monotonic()
    entry = _hits.get(key)
    if entry is not None and now - entry[0] < settings.POLICY_AUDIT_INTERVAL:
        entry[1] += 1
        return
    suppressed = int(entry[1]) if entry else 0
    if len(_hits) > 10_000:
        _hits.clear()
    _hits[key] = [now, 0]
    # Per-channel keys could still add up to many events for one client: each
    # actor has a budget of events per window as well.
    actor_key = ("actor", principal.user.pk if principal.is_authenticated else principal.auth.client_ip)
    budget = _hits.get(actor_key)
    if budget is None or now - budget[0] >= settings.POLICY_AUDIT_INTERVAL:
        budget = _hits[actor_key] = [now, 0]
    budget[1] += 1
    if budget[1] > _AUDIT_EVENTS_PER_ACTOR:
        return

    try:
        await database_sync_to_async(audit_without_waiting, thread_sensitive=False)(
            action="ratelimit.exceeded",
            outcome="denied",
            actor=principal.user if principal.is_authenticated else None,
            target=f"{resource.type}::{resource.id}",
            client_ip=principal.auth.client_ip,
            details={
                "policy": rule.name,
                "limit": str(item),
                "action": action,
                "key": list(identifiers),
                "repeats_since_last": suppressed,
            },
        )
    except Exception:
        logger.exception("could not audit a rate-limit hit")


def reset() -> None:
    """Forget rules and local counters (tests)."""
    global _rules
    _rules = _Rules(None, 0.0, ())
    _shared.clear()
    _local.clear()
    _clients.clear()
    _hits.clear()
