"""Every retention policy is enforced by a job: channel history, document versions, real-time
tickets (and the stale-presence sweep that replaced its policy). Each job deletes what is past
retention and nothing else. Redis-backed ones are tested against Redis (services tier)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from collab.models import Document, DocumentVersion
from tests.jobs.test_retention import set_policy
from webconnect.jobs.models import DataKind, JobRun, RetentionPolicy
from webconnect.jobs.registry import JOBS
from webconnect.jobs.services import job_run
from webconnect.models import RealtimeTicket
from webconnect.realtime import history as history_module
from webconnect.realtime import jobs as realtime_jobs
from webconnect.realtime import protocol
from webconnect.realtime.history import MemoryHistory
from webconnect.realtime.hub import get_hub

DAY_MS = 86_400_000


def sent_days_ago(days: float) -> int:
    return protocol.now_ms() - int(days * DAY_MS)


async def append_at(history: Any, channel: str, sent_ms: int, payload: Any, *, size: int = 100) -> int:
    """Store one message as the hub does, as if sent at `sent_ms`."""
    with mock.patch.object(protocol, "now_ms", return_value=sent_ms):
        prefix, suffix = protocol.message_frame_parts(channel, payload, {"user_id": 1, "name": "alice"}, "json")
    offset, _epoch, _text = await history.append(channel, prefix, suffix, size=size, ttl=30 * 86_400)
    return offset


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    """sync_to_async's thread keeps its own database connection: close it, or the
    test database cannot be dropped at the end of the run."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()


def channel_name(label: str) -> str:
    return f"chat.{label}-{secrets.token_hex(3)}"


# --- Every policy has its job ------------------------------------------------------------------


@pytest.mark.django_db
def test_every_retention_policy_has_a_job_and_stale_presence_is_no_longer_a_policy(
    client: Client, admin_user: Any
) -> None:
    kinds_with_jobs = {job.kind for job in JOBS.values() if job.kind is not None}
    assert set(DataKind.values) <= kinds_with_jobs
    policies = set(RetentionPolicy.objects.values_list("kind", flat=True))
    assert policies == set(DataKind.values) and "stale_presence" not in policies
    assert "sweep_stale_presence" in JOBS

    client.force_login(admin_user)
    page = client.get("/admin/jobs/retentionpolicy/").content.decode()
    for name in ("prune_channel_history", "prune_document_versions", "prune_realtime_tickets"):
        assert name in page
    assert "NO JOB" not in page and "registered when its app stores this data" not in page


# --- Real-time tickets --------------------------------------------------------------------------


@pytest.mark.django_db
class TestRealtimeTickets:
    def ticket(self, user: Any, *, expired_days_ago: float) -> RealtimeTicket:
        return RealtimeTicket.objects.create(
            digest=secrets.token_hex(32), user=user, expires_at=timezone.now() - timedelta(days=expired_days_ago)
        )

    def test_tickets_expired_longer_ago_than_the_retention_go_and_the_rest_stay(self, alice: Any) -> None:
        old = [self.ticket(alice, expired_days_ago=3), self.ticket(alice, expired_days_ago=1.5)]
        recently_expired = self.ticket(alice, expired_days_ago=0.5)
        valid = self.ticket(alice, expired_days_ago=-0.01)  # still valid for a quarter of an hour
        set_policy("realtime_tickets", max_age_days=1)

        dry = job_run(name="prune_realtime_tickets", dry_run=True)
        assert dry.status == "succeeded" and dry.details["would_delete"] == 2
        assert RealtimeTicket.objects.count() == 4

        run = job_run(name="prune_realtime_tickets")
        assert run.status == "succeeded" and run.items_affected == 2
        remaining = set(RealtimeTicket.objects.values_list("pk", flat=True))
        assert remaining == {recently_expired.pk, valid.pk}
        assert not remaining & {ticket.pk for ticket in old}
        assert job_run(name="prune_realtime_tickets").items_affected == 0  # idempotent

    def test_a_disabled_policy_or_one_without_an_age_deletes_nothing(self, alice: Any) -> None:
        self.ticket(alice, expired_days_ago=30)
        set_policy("realtime_tickets", enabled=False)
        assert job_run(name="prune_realtime_tickets").status == "skipped"
        set_policy("realtime_tickets", enabled=True, max_age_days=None, max_count=10)
        run = job_run(name="prune_realtime_tickets")
        assert run.status == "skipped" and "no maximum age" in run.details["reason"]
        assert RealtimeTicket.objects.count() == 1


# --- Document versions ---------------------------------------------------------------------------


@pytest.mark.django_db
class TestDocumentVersions:
    def version(self, document: Document, *, days_ago: float, name: str = "") -> DocumentVersion:
        version = DocumentVersion.objects.create(document=document, name=name, automatic=not name, state=b"")
        DocumentVersion.objects.filter(pk=version.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
        return version

    def test_automatic_versions_past_retention_go_named_ones_and_recent_ones_stay(self, alice: Any) -> None:
        doc = Document.objects.create(owner=alice, title="Plan")
        old_auto = [self.version(doc, days_ago=400), self.version(doc, days_ago=200)]
        old_named = self.version(doc, days_ago=400, name="Signed-off draft")
        recent_auto = self.version(doc, days_ago=10)
        set_policy("document_versions", max_age_days=180)

        dry = job_run(name="prune_document_versions", dry_run=True)
        assert dry.details["would_delete"] == 2 and DocumentVersion.objects.count() == 4

        run = job_run(name="prune_document_versions")
        assert run.status == "succeeded" and run.items_affected == 2
        remaining = set(DocumentVersion.objects.values_list("pk", flat=True))
        assert remaining == {old_named.pk, recent_auto.pk}
        assert not remaining & {v.pk for v in old_auto}

    def test_a_count_limit_keeps_the_newest_automatic_versions_of_each_document(self, alice: Any) -> None:
        busy = Document.objects.create(owner=alice, title="Busy")
        quiet = Document.objects.create(owner=alice, title="Quiet")
        busy_versions = [self.version(busy, days_ago=days) for days in (5, 4, 3, 2, 1)]
        named = self.version(busy, days_ago=6, name="Kept by name")
        quiet_versions = [self.version(quiet, days_ago=days) for days in (9, 8)]
        set_policy("document_versions", max_age_days=None, max_count=2)

        run = job_run(name="prune_document_versions")
        assert run.items_affected == 3
        remaining = set(DocumentVersion.objects.values_list("pk", flat=True))
        newest_two = {busy_versions[-1].pk, busy_versions[-2].pk}
        assert remaining == newest_two | {named.pk} | {v.pk for v in quiet_versions}


# --- Channel history, embedded (memory) -----------------------------------------------------


@pytest.fixture
def memory_history(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryHistory]:
    """This process's hub with an empty in-memory history (what an embedded server holds)."""
    settings.REDIS_URL = ""
    history = MemoryHistory()
    monkeypatch.setattr(get_hub(), "history", history)
    yield history


@pytest.mark.django_db(transaction=True)
async def test_the_job_prunes_in_memory_channel_history_by_age_and_count(memory_history: MemoryHistory) -> None:
    from asgiref.sync import sync_to_async

    old_channel, busy_channel = channel_name("old"), channel_name("busy")
    for days in (10, 9, 1, 0):
        await append_at(memory_history, old_channel, sent_days_ago(days), {"days": days})
    for n in range(6):
        await append_at(memory_history, busy_channel, sent_days_ago(0), {"n": n})
    await sync_to_async(set_policy)("channel_history", max_age_days=7, max_count=4)

    dry = await sync_to_async(job_run)(name="prune_channel_history", dry_run=True)
    assert dry.details["would_delete"] == 4  # two too old, two beyond the count
    assert len((await memory_history.latest(old_channel, 100, ttl=60))[0]) == 4

    run = await sync_to_async(job_run)(name="prune_channel_history")
    assert run.status == "succeeded" and run.items_affected == 4
    kept, position = await memory_history.latest(old_channel, 100, ttl=60)
    assert [offset for offset, _ in kept] == [3, 4] and position.offset == 4
    busy, _ = await memory_history.latest(busy_channel, 100, ttl=60)
    assert [offset for offset, _ in busy] == [3, 4, 5, 6]
    # Asking for what was pruned says so (recovered: false), never hides the gap.
    recovery = await memory_history.since(old_channel, protocol.Since(offset=0, epoch=position.epoch), ttl=60)
    assert not recovery.recovered and [offset for offset, _ in recovery.messages] == [3, 4]


@pytest.mark.django_db(transaction=True)
async def test_the_embedded_server_prunes_its_own_memory_as_a_background_task(
    memory_history: MemoryHistory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asgiref.sync import sync_to_async

    channel = channel_name("server")
    await append_at(memory_history, channel, sent_days_ago(30), "old")
    await append_at(memory_history, channel, sent_days_ago(0), "new")
    await sync_to_async(set_policy)("channel_history", max_age_days=7)
    monkeypatch.setattr(realtime_jobs, "MEMORY_PRUNE_SECONDS", 0.05)

    # The kernel starts registered tasks on a server's first connection; start this one here.
    task = asyncio.get_running_loop().create_task(realtime_jobs.prune_memory_history_forever())
    try:
        for _ in range(100):
            kept, _ = await memory_history.latest(channel, 100, ttl=60)
            if len(kept) == 1:
                break
            await asyncio.sleep(0.05)
        assert [offset for offset, _ in kept] == [2]
    finally:
        task.cancel()


def test_a_message_without_a_readable_time_is_never_counted_old() -> None:
    history = MemoryHistory()
    log = history._log("chat.odd", 60)
    log.entries.append((1, '{"header":{"type":"message"},"payload":1}'))
    assert history.prune_before(protocol.now_ms() + DAY_MS) == 0
    assert history_module.message_time_ms(b"not a frame") is None


@pytest.mark.django_db
def test_stale_presence_sweep_in_embedded_mode_says_why_it_has_nothing_to_do(settings: Any) -> None:
    settings.REDIS_URL = ""
    run = job_run(name="sweep_stale_presence")
    assert run.status == "skipped" and "memory" in run.details["reason"]


# --- Services tier: Redis --------------------------------------------------------------------


@pytest.fixture
async def redis_clients() -> AsyncIterator[tuple[Any, Any]]:
    import redis
    import redis.asyncio as aioredis

    async_client = aioredis.Redis.from_url(settings.REDIS_URL)
    sync_client = redis.Redis.from_url(settings.REDIS_URL)
    yield async_client, sync_client
    for key in sync_client.scan_iter(match=history_module.glob_escape(settings.REALTIME_REDIS_PREFIX) + ":*"):
        sync_client.delete(key)
    sync_client.close()
    await async_client.aclose()


def stream_offsets(client: Any, channel: str) -> list[int]:
    key = f"{settings.REALTIME_REDIS_PREFIX}:{{{channel}}}:stream"
    return [int(entry_id.split(b"-")[0]) for entry_id, _ in client.xrange(key)]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
class TestRedisChannelHistory:
    async def test_messages_past_retention_go_from_every_stream_and_the_rest_stay(
        self, redis_clients: tuple[Any, Any]
    ) -> None:
        from asgiref.sync import sync_to_async

        async_client, client = redis_clients
        history = history_module.RedisHistory(async_client, settings.REALTIME_REDIS_PREFIX)
        mixed, recent, ancient = channel_name("mixed"), channel_name("recent"), channel_name("ancient")
        for days in (20, 9, 8, 2, 0):
            await append_at(history, mixed, sent_days_ago(days), {"days": days})
        for _ in range(3):
            await append_at(history, recent, sent_days_ago(1), "fresh")
        for _ in range(2):
            await append_at(history, ancient, sent_days_ago(30), "stale")
        await sync_to_async(set_policy)("channel_history", max_age_days=7)

        dry = await sync_to_async(job_run)(name="prune_channel_history", dry_run=True)
        assert dry.status == "succeeded" and dry.details["would_delete"] == 5
        assert dry.details["streams"] >= 3 and stream_offsets(client, mixed) == [1, 2, 3, 4, 5]

        run = await sync_to_async(job_run)(name="prune_channel_history")
        assert run.status == "succeeded" and run.items_affected == 5, run.details
        assert stream_offsets(client, mixed) == [4, 5]
        assert stream_offsets(client, recent) == [1, 2, 3]
        assert stream_offsets(client, ancient) == []
        # Offsets go on where they were, and the gap is reported, not hidden.
        position = await history.position(mixed, ttl=60)
        assert await append_at(history, mixed, sent_days_ago(0), "next") == 6
        recovery = await history.since(mixed, protocol.Since(offset=1, epoch=position.epoch), ttl=60)
        assert not recovery.recovered and [offset for offset, _ in recovery.messages] == [4, 5, 6]
        assert (await sync_to_async(job_run)(name="prune_channel_history")).items_affected == 0

    async def test_a_count_limit_keeps_the_newest_messages_of_each_channel(
        self, redis_clients: tuple[Any, Any]
    ) -> None:
        from asgiref.sync import sync_to_async

        async_client, client = redis_clients
        history = history_module.RedisHistory(async_client, settings.REALTIME_REDIS_PREFIX)
        busy, small = channel_name("busy"), channel_name("small")
        for n in range(6):
            await append_at(history, busy, sent_days_ago(0), n)
        await append_at(history, small, sent_days_ago(0), "one")
        await sync_to_async(set_policy)("channel_history", max_age_days=None, max_count=2)
        run = await sync_to_async(job_run)(name="prune_channel_history")
        assert run.items_affected == 4
        assert stream_offsets(client, busy) == [5, 6] and stream_offsets(client, small) == [1]

    async def test_a_channel_that_restarts_its_epoch_meanwhile_keeps_its_new_messages(
        self, redis_clients: tuple[Any, Any]
    ) -> None:
        from asgiref.sync import sync_to_async

        async_client, client = redis_clients
        history = history_module.RedisHistory(async_client, settings.REALTIME_REDIS_PREFIX)
        channel = channel_name("reset")
        for _ in range(3):
            await append_at(history, channel, sent_days_ago(30), "stale")
        await sync_to_async(set_policy)("channel_history", max_age_days=7)
        offset_key, epoch_key, stream_key = history.keys(channel)
        real_old_entries = realtime_jobs._old_entries

        def history_lost_meanwhile(*args: Any) -> Any:
            found = real_old_entries(*args)
            # The channel's history expires and a new message starts a new epoch at offset 1.
            client.delete(offset_key, epoch_key, stream_key)
            sync_history = history_module.RedisHistory(client, settings.REALTIME_REDIS_PREFIX)
            sync_history._publish(
                keys=list(history.keys(channel)),
                args=[history_module.new_epoch(), 100, 60, history.pubsub_channel(channel), '{"header":{', "}}"],
            )
            return found

        with mock.patch.object(realtime_jobs, "_old_entries", history_lost_meanwhile):
            run = await sync_to_async(job_run)(name="prune_channel_history")
        assert run.status == "succeeded" and run.items_affected == 0
        assert stream_offsets(client, channel) == [1]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
async def test_presence_of_stopped_processes_is_swept_and_live_presence_stays(
    redis_clients: tuple[Any, Any],
) -> None:
    from asgiref.sync import sync_to_async

    from webconnect.realtime.presence import RedisPresence

    async_client, client = redis_clients
    prefix = settings.REALTIME_REDIS_PREFIX
    live, stopped = RedisPresence(async_client, prefix, "live01"), RedisPresence(async_client, prefix, "dead01")
    quiet, busy = channel_name("quiet"), channel_name("busy")
    await live.add(busy, "c1", {"user_id": 1, "name": "alice"})
    await stopped.add(busy, "c2", {"user_id": 2, "name": "bob"})
    await stopped.add(busy, "c3", {"user_id": 2, "name": "bob"})
    await stopped.add(quiet, "c4", {"user_id": 3, "name": "carol"})
    await async_client.delete(f"{prefix}:alive:dead01")  # its heartbeat lapsed: the process stopped

    dry = await sync_to_async(job_run)(name="sweep_stale_presence", dry_run=True)
    assert dry.status == "succeeded" and dry.details["would_delete"] == 3
    run = await sync_to_async(job_run)(name="sweep_stale_presence")
    assert run.status == "succeeded" and run.items_affected == 3
    assert client.hkeys(f"{prefix}:{{{busy}}}:presence") == [b"live01:c1"]
    assert client.hlen(f"{prefix}:{{{quiet}}}:presence") == 0
    assert [m["name"] for m in await live.members(busy)] == ["alice"]
    assert await JobRun.objects.filter(job="sweep_stale_presence").acount() == 2
