"""The bridge runner (`manage.py runbridges`): one active per deployment, holding every broker connection.

Why a process of its own, not a task in each web process: an MQTT subscription or an AMQP consumer in N
web processes would ingest each device reading N times (or need shared subscriptions and cross-process
dedup), a broker outage or slow confirms would compete with WebSocket traffic on the web processes' event
loops, and the bridges restart and scale independently of the web tier and of Celery. The web processes
only append to the outbox in Redis (one script call per publish in a mirrored namespace).
Several runners may be started: a lease in Redis keeps one active, the others wait to take over.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from bridges import amqp, mqtt, outbox, store
from bridges.selectors import AMQP, MQTT, Snapshot, asnapshot
from bridges.status import Status

logger = logging.getLogger(__name__)

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class LeaseLost(Exception):
    pass


class NotConfigured(Exception):
    pass


def lease_key() -> str:
    return f"{store.prefix()}:lease"


async def _keep_lease(client: Any, token: str) -> None:
    ttl_ms = settings.BRIDGES_LEASE_SECONDS * 1000
    while True:
        await asyncio.sleep(settings.BRIDGES_LEASE_SECONDS / 3)
        if not await client.eval(_RENEW_LUA, 1, lease_key(), token, ttl_ms):
            raise LeaseLost("another runner holds the bridges lease")


def _workers(snapshot: Snapshot, client: Any, status: Status) -> list[asyncio.Task[None]]:
    targets = store.configured_targets()
    tasks = []
    if AMQP in targets:
        tasks.append(asyncio.create_task(amqp.mirror(settings.BRIDGES_AMQP_URL, outbox.Outbox(client, AMQP), status)))
        for route in snapshot.amqp.values():
            if route.queue and route.service_user is not None:
                tasks.append(asyncio.create_task(amqp.consume(settings.BRIDGES_AMQP_URL, route, status)))
    if MQTT in targets and snapshot.mqtt:
        box = outbox.Outbox(client, MQTT) if any(r.to_mqtt for r in snapshot.mqtt.values()) else None
        tasks.append(asyncio.create_task(mqtt.run(settings.BRIDGES_MQTT_URL, snapshot, box, status)))
    return tasks


async def _supervise(client: Any, status: Status) -> None:
    """Run the workers for the current settings; restart them when an administrator changes a bridge."""
    while True:
        snapshot = await asnapshot()
        tasks = _workers(snapshot, client, status)
        try:
            while True:
                await asyncio.sleep(max(1, settings.BRIDGES_CONFIG_SECONDS))
                # A long-lived process has no request cycle: drop a connection the database closed.
                await sync_to_async(close_old_connections)()
                changed = await asnapshot()
                if changed.signature() != snapshot.signature():
                    logger.info("bridges: settings changed, reconnecting")
                    break
                for task in tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def run_bridges() -> None:
    """Until cancelled: wait for the lease, then run every configured bridge."""
    targets = store.configured_targets()
    if not targets:
        raise NotConfigured("no bridge to run: set REDIS_URL and BRIDGES_AMQP_URL and/or BRIDGES_MQTT_URL")
    client = store.redis_client()
    token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
    status = Status(client)
    while True:
        if not await client.set(lease_key(), token, nx=True, px=settings.BRIDGES_LEASE_SECONDS * 1000):
            await asyncio.sleep(1)
            continue
        logger.info("bridges: runner %s active for %s", token, ", ".join(targets))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(_keep_lease(client, token))
                group.create_task(status.heartbeat())
                group.create_task(_supervise(client, status))
        except* LeaseLost:
            logger.warning("bridges: lease lost, standing by")
        finally:
            # Let a standby take over at once when this one stops.
            await client.eval(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                1, lease_key(), token,
            )  # fmt: skip
