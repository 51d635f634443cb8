"""Bridge figures on /metrics and the Operations dashboard, as every web process sees them.

The outbox and the runner's state live in Redis; a background task in each web process copies them into
these gauges every second, so a scrape or the ops publisher reads memory, never Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from django.conf import settings
from prometheus_client import Counter, Gauge

from bridges import store

logger = logging.getLogger(__name__)

BUFFERED = Gauge(
    "webconnect_bridge_buffered_messages",
    "Messages waiting in a bridge's outage buffer (outbox), by target",
    ["target"],
    multiprocess_mode="max",
)
DROPPED = Gauge(
    "webconnect_bridge_dropped_messages",
    "Messages not mirrored because the outage buffer was full, since the buffer was created, by target",
    ["target"],
    multiprocess_mode="max",
)
UP = Gauge(
    "webconnect_bridge_up",
    "1 while the bridge runner is connected to the target's broker (0: down, or no runner reporting)",
    ["target"],
    multiprocess_mode="max",
)
OUTBOX_ERRORS = Counter(
    "webconnect_bridge_outbox_errors", "Messages that could not be queued for a bridge (Redis failed)", ["target"]
)
# The runner's own figures (its process; it serves no /metrics, so they are also in its status hash).
FORWARDED = Counter("webconnect_bridge_forwarded", "Messages confirmed by a broker, by target", ["target"])
INGESTED = Counter("webconnect_bridge_ingested", "Broker messages stored in a channel, by target", ["target"])
REJECTED = Counter(
    "webconnect_bridge_rejected",
    "Broker messages refused (not allowed, malformed), by target and code",
    ["target", "code"],
)

# A runner that stopped writing its status this long ago counts as down.
STALE_SECONDS = 10.0


def figures() -> dict[str, Any]:
    """The bridge part of the ops payload (this process's gauges)."""
    result: dict[str, Any] = {"buffered": 0.0, "dropped": 0.0, "up": {}}
    for gauge, name in ((BUFFERED, "buffered"), (DROPPED, "dropped"), (UP, "up")):
        for family in gauge.collect():
            for sample in family.samples:
                if name == "up":
                    result["up"][sample.labels["target"]] = sample.value
                else:
                    result[name] += sample.value
    return result


async def refresh(client: Any, targets: tuple[str, ...]) -> None:
    async with client.pipeline(transaction=False) as pipe:
        for target in targets:
            pipe.xlen(store.stream_key(target))
            pipe.get(store.dropped_key(target))
        pipe.hgetall(store.status_key())
        answers = await pipe.execute()
    status = {k.decode(): v.decode() for k, v in answers[-1].items()}
    fresh = time.time() - float(status.get("updated", 0)) < STALE_SECONDS
    for index, target in enumerate(targets):
        BUFFERED.labels(target).set(answers[2 * index])
        DROPPED.labels(target).set(int(answers[2 * index + 1] or 0))
        UP.labels(target).set(1 if fresh and status.get(f"{target}.up") == "1" else 0)


async def run() -> None:
    """Copy the bridge figures from Redis every second (a kernel background task of each web process)."""
    targets = store.configured_targets()
    if not targets:
        return
    client = store.redis_client()
    while True:
        try:
            await refresh(client, targets)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # Redis down: the figures keep their last values; /readyz reports Redis
            logger.debug("bridges: figures not refreshed: %s", exc)
        await asyncio.sleep(settings.BRIDGES_METRICS_INTERVAL_MS / 1000)
