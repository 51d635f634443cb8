"""Who is connected to a channel: user id, display name and connection count.

Redis (production): one hash per channel whose fields are `<process>:<connection>`;
each process keeps an "alive" key with a short TTL refreshed by its heartbeat, and
readers drop the fields of processes whose key has expired, so the entries of a
process that died disappear within REALTIME_PRESENCE_TTL seconds. Memory (development):
a dict in this process.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any


def process_ttl() -> int:
    """Seconds a process's alive key lives; the hub refreshes it every third of that."""
    from django.conf import settings

    return int(settings.REALTIME_PRESENCE_TTL)


def summarise(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_user: dict[Any, dict[str, Any]] = {}
    for entry in entries:
        key = entry.get("user_id")
        row = by_user.setdefault(key, {"user_id": key, "name": entry.get("name", ""), "connections": 0})
        row["connections"] += 1
    return sorted(by_user.values(), key=lambda row: (str(row["name"]), str(row["user_id"])))


class MemoryPresence:
    def __init__(self) -> None:
        self._channels: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    async def add(self, channel: str, conn_id: str, info: dict[str, Any]) -> None:
        self._channels[channel][conn_id] = info

    async def remove(self, channel: str, conn_id: str) -> None:
        members = self._channels.get(channel)
        if members is not None:
            members.pop(conn_id, None)
            if not members:
                del self._channels[channel]

    async def members(self, channel: str) -> list[dict[str, Any]]:
        return summarise(list(self._channels.get(channel, {}).values()))

    async def refresh(self, channels: set[str]) -> None:
        return None


class RedisPresence:
    def __init__(self, redis: Any, prefix: str, process_id: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.process_id = process_id

    def _key(self, channel: str) -> str:
        return f"{self.prefix}:{{{channel}}}:presence"

    def _alive_key(self, process_id: str) -> str:
        return f"{self.prefix}:alive:{process_id}"

    async def add(self, channel: str, conn_id: str, info: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._alive_key(self.process_id), "1", ex=process_ttl())
            pipe.hset(self._key(channel), f"{self.process_id}:{conn_id}", json.dumps(info))
            pipe.expire(self._key(channel), process_ttl() * 4)
            await pipe.execute()

    async def remove(self, channel: str, conn_id: str) -> None:
        await self.redis.hdel(self._key(channel), f"{self.process_id}:{conn_id}")

    async def members(self, channel: str) -> list[dict[str, Any]]:
        raw: dict[bytes, bytes] = await self.redis.hgetall(self._key(channel))
        if not raw:
            return []
        processes = sorted({field.decode().split(":", 1)[0] for field in raw})
        alive_keys = [self._alive_key(p) for p in processes]
        # On a cluster the alive keys are spread over slots: one read per slot.
        mget = getattr(self.redis, "mget_nonatomic", self.redis.mget)
        alive_flags = await mget(alive_keys)
        alive = {p for p, flag in zip(processes, alive_flags, strict=True) if flag is not None}
        stale = [field for field in raw if field.decode().split(":", 1)[0] not in alive]
        if stale:
            await self.redis.hdel(self._key(channel), *stale)
        return summarise([json.loads(value) for field, value in raw.items() if field not in stale])

    async def refresh(self, channels: set[str]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._alive_key(self.process_id), "1", ex=process_ttl())
            for channel in channels:
                pipe.expire(self._key(channel), process_ttl() * 4)
            await pipe.execute()
