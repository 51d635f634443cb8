"""Where the bridges keep their state in Redis (on REDIS_URL), and which brokers this deployment has."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from django.conf import settings

from bridges.selectors import TARGETS


def prefix() -> str:
    return f"{settings.REALTIME_REDIS_PREFIX}:bridges"


def stream_key(target: str) -> str:
    return f"{prefix()}:outbox:{target}"


def dropped_key(target: str) -> str:
    return f"{prefix()}:dropped:{target}"


def status_key() -> str:
    return f"{prefix()}:status"


def message_id(epoch: str, offset: int) -> str:
    """A message's id on every broker: unique per channel, the same on every redelivery."""
    return f"{epoch}:{offset}"


def configured_targets() -> tuple[str, ...]:
    """The targets this deployment has a broker for (needs Redis: the outbox lives there)."""
    if not settings.REDIS_URL:
        return ()
    urls = {"amqp": settings.BRIDGES_AMQP_URL, "mqtt": settings.BRIDGES_MQTT_URL}
    return tuple(target for target in TARGETS if urls[target])


_clients: dict[int, Any] = {}


def redis_client() -> Any:
    """One client per event loop (redis.asyncio connections belong to the loop that made them)."""
    loop = id(asyncio.get_running_loop())
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = aioredis.Redis.from_url(settings.REDIS_URL)
    return client
