"""The operations figures each web process publishes on `sys.ops` every second.

They come from the same Prometheus metrics that /metrics exposes (this
process's values), turned into per-second rates and percentiles by differencing
two consecutive readings, plus database, Redis, Celery and job health.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from webconnect.jobs.models import JobRun
from webconnect.models import Namespace
from webconnect.realtime import metrics
from webconnect.realtime.hub import get_hub
from webconnect.realtime.selectors import anamespace_get, namespace_cache_clear

logger = logging.getLogger(__name__)

OPS_CHANNEL = "sys.ops"
SYSTEM_SENDER = {"user_id": None, "name": "system"}
# The system channel's namespace (server publishes, staff read), created on first use.
SYSTEM_NAMESPACES = {
    "sys": {
        "history_size": 60,
        "history_ttl": 600,
        "presence": False,
        "client_publish": False,
        "anonymous_read": False,
    },
}
# The demo data everyone may read, signed in or not: only on request (`bootstrap --demo`, which
# `make run` passes, or DEBUG), never on a production install's first request.
DEMO_NAMESPACES = {
    "demo": {
        "history_size": 200,
        "history_ttl": 3600,
        "presence": False,
        "client_publish": False,
        "anonymous_read": True,
    },
}


def ensure_namespaces(*, demo: bool = False) -> None:
    """The `sys` namespace, and with `demo` the anonymous-readable `demo` one; existing rows are left alone."""
    created = False
    wanted = {**SYSTEM_NAMESPACES, **(DEMO_NAMESPACES if demo else {})}
    for name, values in wanted.items():
        created |= Namespace.objects.get_or_create(name=name, defaults=values)[1]
    if created:
        namespace_cache_clear()


def _collectors() -> list[Any]:
    """The metric objects the figures come from (not the whole registry: some of its collectors query the DB)."""

    found: list[Any] = [
        metrics.CONNECTIONS,
        metrics.SUBSCRIPTIONS,
        metrics.FRAMES_IN,
        metrics.FRAMES_OUT,
        metrics.DELIVERIES,
        metrics.ERRORS,
        metrics.PUBLISHES,
        metrics.LATENCY,
    ]
    try:
        from policies import metrics as policy_metrics

        found += [policy_metrics.decisions, policy_metrics.rate_limited]
    except ImportError:  # the policy engine is optional for the figures
        pass
    try:
        from bridges import metrics as bridge_metrics

        found += [bridge_metrics.BUFFERED, bridge_metrics.DROPPED, bridge_metrics.UP]
    except ImportError:  # so are the bridges
        pass
    return found


def read_samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """This process's metric samples: (name, sorted labels) -> value."""
    samples = {}
    for collector in _collectors():
        for family in collector.collect():
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _by_label(samples: dict[Any, float], name: str, label: str) -> dict[str, float]:
    result: dict[str, float] = {}
    for (sample_name, labels), value in samples.items():
        if sample_name == name:
            key = dict(labels).get(label, "")
            result[key] = result.get(key, 0.0) + value
    return result


def _total(samples: dict[Any, float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _rates(now: dict[str, float], before: dict[str, float], seconds: float) -> dict[str, float]:
    return {k: round(max(0.0, v - before.get(k, 0.0)) / seconds, 2) for k, v in now.items()}


def _percentile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The bucket bound under which a fraction q of observations fall (cumulative buckets)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    target = q * buckets[-1][1]
    for bound, count in buckets:
        if count >= target:
            return None if bound == float("inf") else bound * 1000
    return None


def latency_buckets(now: dict[Any, float], before: dict[Any, float]) -> list[tuple[float, float]]:
    """Cumulative frame-handling-time buckets (all types) observed between two readings."""
    totals: dict[float, float] = {}
    for (name, labels), value in now.items():
        if name == "webconnect_realtime_frame_seconds_bucket":
            bound = float(dict(labels)["le"])
            totals[bound] = totals.get(bound, 0.0) + value - before.get((name, labels), 0.0)
    return sorted(totals.items())


def _delta_rate(now: dict[Any, float], before: dict[Any, float], name: str, seconds: float) -> float:
    return round(max(0.0, _total(now, name) - _total(before, name)) / seconds, 2)


def figures(now: dict[Any, float], before: dict[Any, float], seconds: float) -> dict[str, Any]:
    """The per-process figures from two metric readings `seconds` apart."""
    buckets = latency_buckets(now, before)
    frames_in, frames_out = "webconnect_realtime_frames_in_total", "webconnect_realtime_frames_out_total"
    decisions = "webconnect_policy_decisions_total"
    denials_now = _by_label(now, decisions, "result").get("deny", 0.0)
    denials_before = _by_label(before, decisions, "result").get("deny", 0.0)
    return {
        "connections": _total(now, "webconnect_realtime_connections"),
        "subscriptions": _total(now, "webconnect_realtime_subscriptions"),
        "frames_in": _rates(_by_label(now, frames_in, "type"), _by_label(before, frames_in, "type"), seconds),
        "frames_out": _rates(_by_label(now, frames_out, "type"), _by_label(before, frames_out, "type"), seconds),
        "deliveries_per_s": _delta_rate(now, before, "webconnect_realtime_deliveries_total", seconds),
        "publishes_per_s": _delta_rate(now, before, "webconnect_realtime_publishes_total", seconds),
        "latency_ms": {q: _percentile(buckets, v) for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        "errors": _by_label(now, "webconnect_realtime_errors_total", "code"),
        "rate_limited": _total(now, "webconnect_rate_limited_total"),
        "policy": {
            "decisions_per_s": _delta_rate(now, before, decisions, seconds),
            "denials_per_s": round(max(0.0, denials_now - denials_before) / seconds, 2),
        },
        # The bridges' outage buffer (messages waiting for a broker) and what it could not hold.
        "bridges": {
            "buffered": _total(now, "webconnect_bridge_buffered_messages"),
            "dropped": _total(now, "webconnect_bridge_dropped_messages"),
            "up": _by_label(now, "webconnect_bridge_up", "target"),
        },
    }


def health() -> dict[str, Any]:
    """Database round trip, Celery queue length and the latest job results (sync; a worker thread)."""

    result: dict[str, Any] = {}
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        result["db"] = {"ok": 1, "ms": round((time.perf_counter() - started) * 1000, 2)}
        result["jobs"] = [
            {
                "job": run.job,
                "status": run.status,
                "affected": run.items_affected,
                "at": run.started_at.isoformat(timespec="seconds"),
            }
            for run in JobRun.objects.order_by("-started_at")[:5]
        ]
    except Exception as exc:  # a health probe reports, it does not raise
        result["db"] = {"ok": 0, "error": type(exc).__name__}
        result["jobs"] = []
    finally:
        connection.close()
    return result


def filesystem_queue_length() -> int | None:
    """Messages waiting in the development (filesystem) broker: one file each in its folder."""
    folder = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}).get("data_folder_in")
    if not folder or not str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        return None
    try:
        return sum(1 for entry in os.scandir(folder) if entry.is_file() and entry.name.endswith(".msg"))
    except OSError:
        return None


async def redis_health(redis: Any) -> dict[str, Any]:
    if redis is None:
        return {"redis": {"ok": None}, "celery_queue": filesystem_queue_length()}
    started = time.perf_counter()
    try:
        await redis.ping()
        queue = await redis.llen("celery")
        return {"redis": {"ok": 1, "ms": round((time.perf_counter() - started) * 1000, 2)}, "celery_queue": queue}
    except Exception as exc:
        return {"redis": {"ok": 0, "error": type(exc).__name__}, "celery_queue": None}


async def run(interval: float | None = None) -> None:
    """Publish this process's figures on `sys.ops` every `interval` seconds, until cancelled."""

    interval = interval or getattr(settings, "DASHBOARDS_OPS_INTERVAL_MS", 1000) / 1000
    hub = get_hub()
    await sync_to_async(ensure_namespaces)()
    redis = None
    if settings.REDIS_URL:
        import redis.asyncio as aioredis

        redis = aioredis.Redis.from_url(settings.REDIS_URL)
    before, before_at = read_samples(), time.monotonic()
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                now, now_at = read_samples(), time.monotonic()
                payload = figures(now, before, max(0.001, now_at - before_at))
                before, before_at = now, now_at
                payload.update(await sync_to_async(health, thread_sensitive=False)())
                payload.update(await redis_health(redis))
                payload["process"] = hub.process_id
                namespace = await anamespace_get("sys")
                if namespace is not None:
                    await hub.publish(OPS_CHANNEL, namespace, payload, SYSTEM_SENDER)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("ops figures: publish failed")
    finally:
        if redis is not None:
            await redis.aclose()
