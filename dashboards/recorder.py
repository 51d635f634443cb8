"""The recorder: turns messages published on widget channels into series points.

It is a subscriber of the process-local real-time hub (like a socket), so every
way of publishing (WebSocket, REST, the CLI, batch ingest, the ops publisher)
feeds it. `deliver` only appends to a bounded buffer (it runs inside the hub's
fan-out and must not block); a background task parses and writes the buffer in
batches every half second.

Several web processes (services mode) all receive every message, so only the
holder of a short Redis lease writes; the others drop what they buffered.
A lease handover can lose or double at most one flush interval of points.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from dashboards import metrics, services
from dashboards.selectors import channel_paths
from webconnect.realtime.hub import get_hub

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 0.5
REFRESH_SECONDS = 2.0
LEASE_MS = 10_000


class Recorder:
    def __init__(self, buffer_size: int | None = None) -> None:
        size = buffer_size or int(getattr(settings, "DASHBOARDS_RECORDER_BUFFER", 100_000))
        self.buffer: collections.deque[tuple[str, str]] = collections.deque(maxlen=size)
        self.paths: dict[str, set[str]] = {}
        self.dropped = 0  # messages pushed out of a full buffer
        self.stored = 0
        self.rejected = 0  # values at a widget path that were missing or not numbers
        self.leader = True

    def hold(self, channel: str) -> None:
        return None

    async def resync(self, channel: str) -> None:
        # Points published while this process's Redis subscription was down are
        # not recorded here: series are samples, and a gap in a chart is honest.
        return None

    # Hub Subscriber protocol: called inside the fan-out, must not block.
    def deliver(self, channel: str, offset: int, text: str) -> None:
        if offset == 0:  # join/leave events are not channel messages
            return
        if len(self.buffer) == self.buffer.maxlen:
            self.dropped += 1
            metrics.RECORDER_DROPPED.inc()
        self.buffer.append((channel, text))

    def points_from(self, channel: str, text: str) -> list[tuple[str, str, int, float]]:
        value_paths = self.paths.get(channel)
        if not value_paths:
            return []
        try:
            frame = json.loads(text)
            ts = int(frame["header"].get("ts") or time.time() * 1000)
            payload = frame.get("payload")
        except (ValueError, KeyError, TypeError, AttributeError):
            return []
        extracted = services.extract_points(payload, sorted(value_paths))
        self.rejected += len(extracted.problems)
        for problem in extracted.problems:
            metrics.VALUES_REJECTED.labels(problem["code"]).inc()
        return [(channel, path, ts, value) for path, value in extracted.points]

    def flush(self) -> int:
        """Write what is buffered (sync: runs in a worker thread); returns points written."""
        batch = []
        while self.buffer:
            batch.append(self.buffer.popleft())
        if not self.leader or not batch:
            return 0
        points = [point for channel, text in batch for point in self.points_from(channel, text)]
        if points:
            services.points_store(points)
            self.stored += len(points)
            metrics.POINTS_RECORDED.inc(len(points))
        return len(points)

    def refresh(self, paths: dict[str, set[str]]) -> tuple[set[str], set[str]]:
        """Take a new channel table; returns (channels added, channels removed)."""
        added, removed = set(paths) - set(self.paths), set(self.paths) - set(paths)
        self.paths = paths
        return added, removed


async def _lease(redis: Any, key: str, owner: str) -> bool:
    if await redis.set(key, owner, nx=True, px=LEASE_MS):
        return True
    holder = await redis.get(key)
    if holder is not None and holder.decode() == owner:
        await redis.pexpire(key, LEASE_MS)
        return True
    return False


async def run_default() -> None:
    await run(Recorder())


async def run(recorder: Recorder) -> None:
    """Keep the recorder subscribed to the widget channels and flush it, until cancelled."""
    hub = get_hub()
    await hub.start()
    redis = None
    if settings.REDIS_URL:
        import redis.asyncio as aioredis

        redis = aioredis.Redis.from_url(settings.REDIS_URL)
    lease_key = f"{settings.REALTIME_REDIS_PREFIX}:dashboards:recorder"
    last_refresh = 0.0
    try:
        while True:
            try:
                if time.monotonic() - last_refresh > REFRESH_SECONDS:
                    last_refresh = time.monotonic()
                    added, removed = recorder.refresh(await sync_to_async(channel_paths)())
                    for channel in added:
                        hub.add(channel, recorder)
                    for channel in removed:
                        hub.remove(channel, recorder)
                    if redis is not None:
                        recorder.leader = await _lease(redis, lease_key, hub.process_id)
                await sync_to_async(recorder.flush)()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("dashboards recorder: flush failed; retrying")
            await asyncio.sleep(FLUSH_SECONDS)
    finally:
        for channel in recorder.paths:
            hub.remove(channel, recorder)
        if redis is not None:
            await redis.aclose()
