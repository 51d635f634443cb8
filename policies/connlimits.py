"""Concurrent-connection limits (ConnectionLimitPolicy), per user and per client IP.

Each open socket holds a place in a sorted set per limited key (user or IP):
member = connection id, score = when the place lapses. Admission prunes lapsed
places, counts and adds in one Lua script, so processes sharing Redis never
admit more than the limit between them. Sockets refresh their places on every
heartbeat; a process that dies stops refreshing and its places lapse within
CONNECTION_LEASE_SECONDS. Without Redis the same sets live in this process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from policies.models import ConnectionLimitPolicy
from webconnect.authorization import ConnectionLimiter
from webconnect.identity import Principal, RateDecision

logger = logging.getLogger(__name__)

_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


@dataclass(frozen=True)
class Rule:
    name: str
    scope: str  # "user" or "ip"
    max_connections: int
    role_id: int | None


def lease_seconds() -> int:
    # Three heartbeats: one missed refresh never drops a live socket's place.
    return 3 * int(settings.REALTIME_HEARTBEAT_INTERVAL) + 5


class PolicyConnectionLimiter(ConnectionLimiter):
    def __init__(self) -> None:
        self._rules: tuple[Rule, ...] = ()
        self._rules_at = -1e9
        self._memory: dict[str, dict[str, float]] = {}
        self._redis: Any = None
        self._redis_loop: asyncio.AbstractEventLoop | None = None
        self._script: Any = None
        self._loading: asyncio.Future[None] | None = None

    def reset(self) -> None:
        """Forget cached rules and in-process places (tests)."""
        self._rules, self._rules_at, self._memory = (), -1e9, {}

    # --- rules ------------------------------------------------------------------

    def _load_rules(self) -> tuple[Rule, ...]:

        return tuple(
            Rule(name, scope, limit, role_id)
            for name, scope, limit, role_id in ConnectionLimitPolicy.objects.filter(enabled=True).values_list(
                "name", "scope", "max_connections", "role_id"
            )
        )

    async def _current_rules(self) -> tuple[Rule, ...]:
        if time.monotonic() - self._rules_at >= settings.POLICY_VERSION_CHECK_INTERVAL:
            # One reload at a time: in a reconnect storm every handshake found the rules stale at once.
            loading = self._loading
            if loading is None or loading.get_loop() is not asyncio.get_running_loop():
                loading = self._loading = asyncio.ensure_future(self._reload())
            await asyncio.shield(loading)
        return self._rules

    async def _reload(self) -> None:
        try:
            self._rules = await sync_to_async(self._load_rules)()
            self._rules_at = time.monotonic()
        finally:
            self._loading = None

    async def _keys(self, principal: Principal) -> list[tuple[str, Rule]]:
        rules = await self._current_rules()
        if not rules:
            return []
        user = principal.user
        authenticated = principal.is_authenticated
        role_ids: set[int] = set()
        if authenticated and any(rule.role_id for rule in rules):
            role_ids = set(await sync_to_async(lambda: list(user.groups.values_list("id", flat=True)))())
        keys = []
        for rule in rules:
            if rule.role_id is not None and rule.role_id not in role_ids:
                continue
            if rule.scope == "user" and authenticated:
                keys.append((f"{rule.name}:user:{user.pk}", rule))
            elif rule.scope == "ip" and principal.auth.client_ip:
                keys.append((f"{rule.name}:ip:{principal.auth.client_ip}", rule))
        return keys

    # --- storage ------------------------------------------------------------------

    def _redis_client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._redis is None or self._redis_loop is not loop:
            import redis.asyncio as aioredis

            self._redis = aioredis.Redis.from_url(settings.REDIS_URL)
            self._redis_loop = loop
            self._script = self._redis.register_script(_ADMIT)
        return self._redis

    def _redis_key(self, key: str) -> str:
        return f"{settings.RATE_LIMIT_KEY_PREFIX}:conn:{key}"

    async def _take(self, key: str, limit: int, connection_id: str) -> bool:
        now = time.time()
        expires = now + lease_seconds()
        if settings.REDIS_URL:
            self._redis_client()
            taken = await self._script(
                keys=[self._redis_key(key)], args=[now, expires, connection_id, limit, lease_seconds()]
            )
            return bool(taken)
        places = self._memory.setdefault(key, {})
        for member, until in list(places.items()):
            if until <= now:
                del places[member]
        if connection_id not in places and len(places) >= limit:
            return False
        places[connection_id] = expires
        return True

    async def _drop(self, key: str, connection_id: str) -> None:
        if settings.REDIS_URL:
            await self._redis_client().zrem(self._redis_key(key), connection_id)
        else:
            self._memory.get(key, {}).pop(connection_id, None)

    async def _renew(self, key: str, connection_id: str) -> None:
        expires = time.time() + lease_seconds()
        if settings.REDIS_URL:
            await self._redis_client().zadd(self._redis_key(key), {connection_id: expires}, xx=True)
        elif connection_id in self._memory.get(key, {}):
            self._memory[key][connection_id] = expires

    # --- the limiter --------------------------------------------------------------

    async def admit(self, principal: Principal, connection_id: str) -> RateDecision:
        taken: list[str] = []
        try:
            for key, rule in await self._keys(principal):
                if not await self._take(key, rule.max_connections, connection_id):
                    for done in taken:
                        await self._drop(done, connection_id)
                    return RateDecision(
                        False,
                        retry_after=float(lease_seconds()),
                        limit=f"{rule.max_connections} connections per {rule.scope} ({rule.name})",
                    )
                taken.append(key)
        except Exception:
            # Counting needs Redis; when it is down, connections are not limited
            # (authorization still decides), and the failure is logged.
            logger.exception("connection limits unavailable; admitting %s", connection_id)
        return RateDecision(True)

    async def refresh(self, principal: Principal, connection_id: str) -> None:
        try:
            for key, _rule in await self._keys(principal):
                await self._renew(key, connection_id)
        except Exception:
            logger.exception("could not refresh connection %s", connection_id)

    async def release(self, principal: Principal, connection_id: str) -> None:
        try:
            for key, _rule in await self._keys(principal):
                await self._drop(key, connection_id)
        except Exception:
            logger.exception("could not release connection %s", connection_id)


limiter = PolicyConnectionLimiter()
