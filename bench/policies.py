"""Policy decision and rate-limit check latency.

    .venv/bin/python bench/policies.py                      # decisions; rate limits in memory
    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/policies.py   # rate limits on Redis

Runs on a fresh SQLite database in a temporary directory (migrated here, the
default policy set plus 100 generated policies) and prints one line per case:
per-call mean and p50/p99 in microseconds.

- parse: loading the policy set for a new version (rows -> parsed Cedar set and
  its index), with and without the per-process cache of policies' JSON forms.
- cold decision: evaluate without the decision cache: the request's slice of the
  set, with the request parts the engine keeps (entity JSON, parsed entities,
  context); variants build a new resource each call, or the slice itself.
- whole set: the engine before slicing (the whole set, the request built and
  serialised per call), measured in the same run for the ratio.
- 1,000 shares: the same with 1,000 template-linked shares in the set.
- batch: decide_many() for 20 channels of one principal (a socket re-checked
  after a change: nothing kept but the slice and the roles), beside decide()
  one by one on the same state.
- cached decision: authorize() answered from the decision cache.
- rate-limit check: acheck_rate() with one matching policy (2 limits), on the
  configured storage (Redis with REDIS_URL, else memory), including the local
  in-process pre-check.
"""

from __future__ import annotations

import asyncio
import itertools
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
    from django.utils import timezone

    from policies import cedar, engine, ratelimit
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

    def first_load() -> None:
        cedar._reads.clear()
        engine.load_snapshot(snap.version)

    measure("parse: first load in a process (JSON forms too)", first_load, 20)
    measure("cold decision: chat.lobby publish", lambda: engine.evaluate(snap, principal, "publish", lobby, {}), 2000)
    measure(
        "cold decision: document edit (shared editor)", lambda: engine.evaluate(snap, principal, "edit", doc, {}), 2000
    )
    rooms = itertools.count()

    def new_channel() -> None:
        engine.evaluate(snap, principal, "publish", Resource("Channel", f"chat.room{next(rooms)}"), {})

    measure("cold decision: a new channel each call", new_channel, 2000)

    def new_slice() -> None:
        snap.slices.clear()
        engine.evaluate(snap, principal, "publish", lobby, {})

    measure("cold decision: its slice parsed too (after a change)", new_slice, 500)

    def whole_set(action: str, resource: Resource) -> None:
        whole_set_of(snap, action, resource)

    def whole_set_of(snap: engine.Snapshot, action: str, resource: Resource) -> None:
        request = cedar.build_request(
            user=user,
            roles=engine._user_roles(user, snap.version),
            action=action,
            resource_type=resource.type,
            resource_id=resource.id,
            resource_attrs=resource.attrs,
            client_ip=principal.auth.client_ip,
            token_scopes=engine._scopes(principal),
            auth_method=principal.auth.method,
            now=timezone.now(),
        )
        cedar.evaluate(snap.policy_set, request, ids=snap.whole.ids)

    measure("whole set (before slicing): chat.lobby publish", lambda: whole_set("publish", lobby), 2000)
    measure("whole set (before slicing): document edit", lambda: whole_set("edit", doc), 2000)
    channels = [("subscribe", Resource("Channel", f"chat.room{n}", {"namespace": "chat"})) for n in range(20)]

    def forget() -> None:
        # As after a change: no decision, resource entity or entity set kept (the slice and the roles are).
        for cache in (engine._decisions, engine._resources, engine._entity_sets, engine._contexts):
            cache.clear()

    def batch() -> None:
        forget()
        engine.decide_many(principal, channels)

    def one_by_one() -> None:
        forget()
        for action, resource in channels:
            engine.decide(principal, action, resource, {})

    per = len(channels)
    row = measure("batch: decide_many, 20 channels (whole call)", batch, 500)
    print(f"{'  per decision':<48} {'':<8} mean {row['mean'] / per:9.1f} µs  p50 {row['p50'] / per:9.1f} µs")
    row = measure("  the same 20 one by one with decide()", one_by_one, 500)
    print(f"{'  per decision':<48} {'':<8} mean {row['mean'] / per:9.1f} µs  p50 {row['p50'] / per:9.1f} µs")
    # 1,000 shares (template links): each used to be a policy in every decision.
    from policies.models import ShareGrant

    editor = AccessPolicy.objects.get(name="share-editor")
    ShareGrant.objects.bulk_create(
        ShareGrant(
            template=editor,
            user=user,
            principal_type="User",
            principal_id=str(user.pk),
            resource_type="Document",
            resource_id=str(1000 + n),
        )
        for n in range(1000)
    )
    policy_version_bump()
    shared = engine.snapshot()
    print(f"with 1,000 shares: {len(shared.index.links) if shared.index else 0} links")
    measure("parse: load the set with 1,000 shares", lambda: engine.load_snapshot(shared.version), 20)
    shared_doc = Resource("Document", "1500", {"owner_id": user.pk + 1})
    measure(
        "cold decision, 1,000 shares: a shared document",
        lambda: engine.evaluate(shared, principal, "edit", shared_doc, {}),
        2000,
    )
    measure(
        "whole set (before slicing), 1,000 shares",
        lambda: whole_set_of(shared, "edit", shared_doc),
        300,
    )
    ShareGrant.objects.all().delete()
    policy_version_bump()
    snap = engine.snapshot()

    assert authorize(principal, "publish", lobby)
    measure("cached decision: authorize() chat.lobby publish", lambda: authorize(principal, "publish", lobby), 20000)
    measure("cached decision: authorize() document edit", lambda: authorize(principal, "edit", doc), 20000)

    RateLimitPolicy.objects.update(enabled=False)  # the defaults would throttle the loop below
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
