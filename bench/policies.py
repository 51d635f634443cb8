"""Policy decision and rate-limit check latency.

    .venv/bin/python bench/policies.py                      # decisions; rate limits in memory
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/policies.py   # rate limits on Redis

Runs on a fresh SQLite database in a temporary directory (migrated here, the
default policy set plus 100 generated policies) and prints one line per case:
per-call mean and p50/p99 in microseconds.

- parse: loading the policy set for a new version (rows -> parsed Cedar set).
- cold decision: build the Cedar request and evaluate (no decision cache).
- cached decision: authorize() answered from the decision cache.
- rate-limit check: acheck_rate() with one matching policy (2 limits), on the
  configured storage (Redis with REDIS_URL, else memory), including the local
  in-process pre-check.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["WEBCONNECT_DATA_DIR"] = tempfile.mkdtemp(prefix="webconnect-bench-")
os.environ.pop("DATABASE_URL", None)  # decisions do not touch the database on the measured paths
os.environ["KERNEL_BACKGROUND_TASKS"] = "false"

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402


def measure(name: str, fn: Callable[[], Any], n: int) -> dict[str, float]:
    for _ in range(min(200, n)):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    row = {
        "mean": statistics.fmean(samples),
        "p50": samples[len(samples) // 2],
        "p99": samples[int(len(samples) * 0.99)],
    }
    print(f"{name:<48} n={n:<6} mean {row['mean']:9.1f} µs  p50 {row['p50']:9.1f} µs  p99 {row['p99']:9.1f} µs")
    return row


async def ameasure(name: str, fn: Callable[[], Any], n: int) -> dict[str, float]:
    for _ in range(min(200, n)):
        await fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        await fn()
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    row = {
        "mean": statistics.fmean(samples),
        "p50": samples[len(samples) // 2],
        "p99": samples[int(len(samples) * 0.99)],
    }
    print(f"{name:<48} n={n:<6} mean {row['mean']:9.1f} µs  p50 {row['p50']:9.1f} µs  p99 {row['p99']:9.1f} µs")
    return row


def main() -> None:
    call_command("migrate", verbosity=0)
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from policies import engine, ratelimit
    from policies.models import AccessPolicy, RateLimitPolicy
    from policies.services import policy_version_bump
    from webconnect.authorization import acheck_rate, authorize
    from webconnect.identity import ConnectionAuth, Principal, Resource

    user = get_user_model().objects.create_user("bench", password="x")  # noqa: S106
    AccessPolicy.objects.bulk_create(
        AccessPolicy(
            name=f"generated-{i}",
            text=f'forbid(principal, action, resource is Channel)\nwhen {{ resource.name == "team{i}.secret" '
            f'&& !context.client_ip.isInRange(ip("10.{i}.0.0/16")) }};',
        )
        for i in range(100)
    )
    policy_version_bump()
    print(f"policy set: {AccessPolicy.objects.filter(enabled=True).count()} policies; python {sys.version.split()[0]}")

    principal = Principal(user, ConnectionAuth(method="session", client_ip="10.1.2.3"))
    lobby = Resource("Channel", "chat.lobby", {"namespace": "chat"})
    doc = Resource("Document", "7", {"owner_id": user.pk + 1, "editor_ids": [user.pk], "viewer_ids": []})

    snap = engine.snapshot()
    measure("parse: load the policy set (new version)", lambda: engine.load_snapshot(snap.version), 50)
    measure("cold decision: chat.lobby publish", lambda: engine.evaluate(snap, principal, "publish", lobby, {}), 2000)
    measure(
        "cold decision: document edit (shared editor)", lambda: engine.evaluate(snap, principal, "edit", doc, {}), 2000
    )
    assert authorize(principal, "publish", lobby)
    measure("cached decision: authorize() chat.lobby publish", lambda: authorize(principal, "publish", lobby), 20000)
    measure("cached decision: authorize() document edit", lambda: authorize(principal, "edit", doc), 20000)

    RateLimitPolicy.objects.create(
        name="bench-publish", scope="user", actions="publish", limits="1000000/second;100000000/hour"
    )
    policy_version_bump()
    engine.snapshot()
    ratelimit.reset()
    storage = settings.RATE_LIMIT_STORAGE_URI.split("://", 1)[0]

    async def rate_check() -> None:
        decision = await acheck_rate(principal, "publish", lobby)
        assert decision.allowed

    async def no_match() -> None:
        await acheck_rate(principal, "subscribe", lobby)

    async def run() -> None:
        await ameasure(f"rate-limit check ({storage}, sliding window, 2 limits)", rate_check, 5000)
        await ameasure("rate-limit check, no matching policy", no_match, 5000)

    asyncio.run(run())


if __name__ == "__main__":
    main()
