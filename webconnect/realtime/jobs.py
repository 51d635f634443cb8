"""Retention jobs for real-time data: channel history, expired tickets and stale presence.

Channel history lives in Redis streams in services mode (one per channel, entry
ids are offsets, not times), so pruning by age reads each stream from its oldest
entry, finds the first message young enough to keep (the frame's `ts`) and
XTRIMs by MINID up to it. In embedded mode the history is in the server
process's memory, which a worker cannot reach: the server applies the same
policy to its own memory every minute (a kernel background task, registered
in WebconnectConfig.ready()), and the job prunes the memory of the process it
runs in.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from webconnect.jobs.models import DataKind
from webconnect.jobs.registry import JobContext, JobResult, delete_in_batches, register_job
from webconnect.jobs.services import retention_policy
from webconnect.models import RealtimeTicket
from webconnect.realtime import protocol
from webconnect.realtime.history import MemoryHistory, entry_time_ms, glob_escape, stream_key_pattern
from webconnect.realtime.hub import get_hub

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
# How often the embedded server applies the channel-history policy to its memory.
MEMORY_PRUNE_SECONDS = 60


# --- Channel history --------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRule:
    """What the channel-history policy keeps: messages sent at or after `before_ms`, at most `per_channel`."""

    before_ms: int | None
    per_channel: int | None


def history_rule() -> HistoryRule | None:
    policy = retention_policy(DataKind.CHANNEL_HISTORY)
    if policy is None:
        return None
    before = protocol.now_ms() - policy.max_age_days * DAY_MS if policy.max_age_days else None
    return HistoryRule(before_ms=before, per_channel=policy.max_count)


@dataclass
class StreamScan:
    streams: int = 0  # streams looked at
    trimmed: int = 0  # streams that lost entries
    entries: int = 0  # entries deleted (or, in a dry run, that would be)


def _old_entries(client: Any, key: bytes, before_ms: int, batch: int) -> tuple[int, bytes]:
    """How many entries, from the oldest on, were sent before `before_ms`, and the MINID that trims exactly those."""
    old, start, last = 0, "-", None
    while entries := client.xrange(key, min=start, max="+", count=batch):
        for entry_id, fields in entries:
            sent = entry_time_ms(fields)
            # A message whose time cannot be read is kept, and so is everything after it.
            if sent is None or sent >= before_ms:
                return old, entry_id
            old += 1
            last = entry_id
        start = "(" + entries[-1][0].decode()
    if last is None:
        return 0, b"0-0"
    # Every entry is old: trim below the id after the last one (offset + 1), so a
    # message appended meanwhile (a higher offset) is kept.
    return old, f"{int(last.split(b'-')[0]) + 1}-0".encode()


# Trim only if the channel's epoch is still the one read before the stream was:
# a new epoch restarts offsets at 1, and a MINID computed from the old offsets
# would then delete the new messages.
_TRIM_IN_EPOCH_LUA = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
return redis.call('XTRIM', KEYS[2], 'MINID', ARGV[2])
"""


def history_prune_redis(client: Any, prefix: str, rule: HistoryRule, context: JobContext) -> StreamScan:
    """Apply `rule` to every channel stream under `prefix`, one SCAN page (batch_size keys) at a time."""
    scan = StreamScan()
    trim_in_epoch = client.register_script(_TRIM_IN_EPOCH_LUA)
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor, match=stream_key_pattern(prefix), count=context.batch_size, _type="STREAM")
        for key in keys:
            scan.streams += 1
            deleted = 0
            if rule.before_ms is not None:
                epoch_key = key.removesuffix(b":stream") + b":epoch"  # RedisHistory.keys
                epoch = client.get(epoch_key) or b""
                old, keep_from = _old_entries(client, key, rule.before_ms, context.batch_size)
                if old and context.dry_run:
                    deleted += old
                elif old:
                    deleted += int(trim_in_epoch(keys=[epoch_key, key], args=[epoch, keep_from]))
            if rule.per_channel is not None:
                surplus = client.xlen(key) - rule.per_channel
                if context.dry_run:
                    deleted += max(0, surplus)  # after an age trim this could overlap it; an estimate
                elif surplus > 0:
                    deleted += client.xtrim(key, maxlen=rule.per_channel, approximate=False)
            if deleted:
                scan.trimmed += 1
                scan.entries += deleted
        context.checkpoint()
        if cursor == 0:
            return scan


def history_prune_memory(history: MemoryHistory, rule: HistoryRule, *, dry_run: bool = False) -> int:
    dropped = history.prune_before(rule.before_ms, dry_run=dry_run) if rule.before_ms is not None else 0
    if rule.per_channel is not None:
        dropped += history.trim_to(rule.per_channel, dry_run=dry_run)
    return dropped


def _redis_client() -> Any:
    import redis

    return redis.Redis.from_url(settings.REDIS_URL)


@register_job(
    "prune_channel_history",
    description="Delete channel history messages past retention (age, and the count per channel)",
    schedule="25 * * * *",
    kind=DataKind.CHANNEL_HISTORY,
)
def prune_channel_history(context: JobContext) -> JobResult:
    rule = history_rule()
    if rule is None:
        return JobResult(skipped_reason="no enabled retention policy for channel history")
    key = "would_delete" if context.dry_run else "deleted"
    if settings.REDIS_URL:
        client = _redis_client()
        try:
            scan = history_prune_redis(client, settings.REALTIME_REDIS_PREFIX, rule, context)
        finally:
            client.close()
        details = {key: scan.entries, "streams": scan.streams, "streams_trimmed": scan.trimmed}
        if rule.before_ms is not None:
            details["before_ts"] = rule.before_ms
        return JobResult(affected=0 if context.dry_run else scan.entries, details=details)
    history = get_hub().history
    dropped = history_prune_memory(history, rule, dry_run=context.dry_run) if isinstance(history, MemoryHistory) else 0
    return JobResult(
        affected=0 if context.dry_run else dropped,
        details={
            key: dropped,
            "backend": "memory of this process",
            "note": "embedded mode: the server process applies this policy to its own in-memory history "
            f"every {MEMORY_PRUNE_SECONDS} s",
        },
    )


async def memory_history_prune_once() -> int:
    """Apply the channel-history policy to this process's in-memory history (embedded mode)."""
    history = get_hub().history
    if settings.REDIS_URL or not isinstance(history, MemoryHistory):
        return 0
    rule = await sync_to_async(history_rule)()
    return history_prune_memory(history, rule) if rule is not None else 0


async def _prune_memory_forever() -> None:
    while True:
        try:
            dropped = await memory_history_prune_once()
            if dropped:
                logger.info("channel history: %d in-memory messages past retention dropped", dropped)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("channel history: pruning the in-memory history failed")
        await asyncio.sleep(MEMORY_PRUNE_SECONDS)


async def prune_memory_history_forever() -> None:
    """A kernel background task of the server (embedded mode only: Redis history is the job's)."""
    if settings.REDIS_URL:
        return
    await _prune_memory_forever()


# --- Real-time tickets -----------------------------------------------------------------------


@register_job(
    "prune_realtime_tickets",
    description="Delete real-time tickets that expired longer ago than the retention age",
    schedule="10 4 * * *",
    kind=DataKind.REALTIME_TICKETS,
)
def prune_realtime_tickets(context: JobContext) -> JobResult:
    policy = retention_policy(DataKind.REALTIME_TICKETS)
    if policy is None:
        return JobResult(skipped_reason="no enabled retention policy for real-time tickets")
    if policy.max_age_days is None:
        # A count of one-time credentials worth keeping means nothing; only their age does.
        return JobResult(skipped_reason="the retention policy sets no maximum age (a count does not apply to tickets)")
    cutoff = timezone.now() - timedelta(days=policy.max_age_days)
    expired = RealtimeTicket.objects.filter(expires_at__lt=cutoff)
    if context.dry_run:
        return JobResult(details={"would_delete": expired.count(), "expired_before": cutoff.isoformat()})
    deleted = delete_in_batches(expired, context)
    return JobResult(affected=deleted, details={"deleted": deleted, "expired_before": cutoff.isoformat()})


# --- Presence ----------------------------------------------------------------------------------


@dataclass
class PresenceSweep:
    channels: int = 0
    entries: int = 0  # entries of stopped processes deleted (or that would be)


def presence_sweep_redis(client: Any, prefix: str, context: JobContext) -> PresenceSweep:
    """Delete presence entries whose server process has stopped (its alive key expired).

    The layout is RedisPresence's: a hash `<prefix>:{<channel>}:presence` with fields
    `<process>:<connection>`, and `<prefix>:alive:<process>` while the process beats.
    Readers drop the same entries when they read a channel; this reaches the
    channels nobody reads.
    """
    sweep = PresenceSweep()
    cursor = 0
    while True:
        cursor, keys = client.scan(
            cursor, match=f"{glob_escape(prefix)}:{{*}}:presence", count=context.batch_size, _type="HASH"
        )
        for key in keys:
            sweep.channels += 1
            fields: list[bytes] = client.hkeys(key)
            processes = sorted({field.split(b":", 1)[0] for field in fields})
            if not processes:
                continue
            flags = client.mget([f"{prefix}:alive:{process.decode()}" for process in processes])
            alive = {process for process, flag in zip(processes, flags, strict=True) if flag is not None}
            stale = [field for field in fields if field.split(b":", 1)[0] not in alive]
            if stale:
                sweep.entries += len(stale) if context.dry_run else client.hdel(key, *stale)
        context.checkpoint()
        if cursor == 0:
            return sweep


@register_job(
    "sweep_stale_presence",
    description="Delete presence entries left by server processes that stopped (services mode)",
    schedule="55 * * * *",
)
def sweep_stale_presence(context: JobContext) -> JobResult:
    if not settings.REDIS_URL:
        return JobResult(
            skipped_reason="embedded mode: presence is in the server process's memory and ends with its connections"
        )
    client = _redis_client()
    try:
        sweep = presence_sweep_redis(client, settings.REALTIME_REDIS_PREFIX, context)
    finally:
        client.close()
    key = "would_delete" if context.dry_run else "deleted"
    return JobResult(
        affected=0 if context.dry_run else sweep.entries, details={key: sweep.entries, "channels": sweep.channels}
    )
