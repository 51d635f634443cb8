"""Telling every process that the policy version moved, and re-checking live sockets there.

The saving process announces the new version after commit (`announce`): it
marks its own cache stale and sends a `policy` control message on the kernel's
bus. Every server process — the saving one included — handles it on its own
event loop: reload, then re-check every live socket (`recheck_all_sessions`).
As the fallback for a lost message or a Redis outage, each server runs a
poller (a kernel background task) that reads the version from the database
every POLICY_POLL_INTERVAL seconds and does the same when it moved.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from policies import engine, metrics, selectors
from webconnect.kernel.sessions import recheck_all_sessions, send_control

logger = logging.getLogger(__name__)

_state_lock = threading.Lock()
_notified_version = 0


def version_moved(version: int) -> bool:
    """Record that `version` is current; True when it differs from what was last announced here.

    Versions only grow, except after a database restore: any difference counts.
    """
    global _notified_version
    with _state_lock:
        if version == _notified_version:
            return False
        _notified_version = version
        return True


def announce(version: int) -> None:
    """After commit, in the saving process (any thread): local invalidation, then every process re-checks."""
    engine.mark_stale()
    metrics.policy_reloads.inc()
    send_control({"op": "policy", "version": version})


async def on_policy_message(message: dict[str, Any]) -> None:
    """The `policy` control message, on this process's loop."""
    engine.mark_stale()
    if version_moved(int(message["version"])):
        logger.info("policy version is now %s: re-checking live sessions", message["version"])
        await recheck_all_sessions()


def check_once() -> bool:
    """Read the version from the database; on a change reload. True if it moved since last announced."""
    version = selectors.policy_version()
    known = engine.loaded_version()
    if known is not None and version == known and version == _notified_version:
        return False
    engine.mark_stale()
    # Load first: if loading fails, the version is not marked as announced and
    # the next check tries again.
    engine.snapshot()
    if not version_moved(version):
        return False
    metrics.policy_reloads.inc()
    logger.info("policy version is now %s (periodic check): re-checking live sessions", version)
    return True


def _check_in_thread() -> bool:
    try:
        return check_once()
    finally:
        # This thread's connection must not outlive the database's limits.
        close_old_connections()


def _version_in_thread() -> int:
    try:
        return selectors.policy_version()
    finally:
        close_old_connections()


async def poll_forever() -> None:
    """The fallback: a kernel background task in every server process."""
    # Start from the version that is current now: no re-check of sockets that cannot exist yet.
    current = await sync_to_async(_version_in_thread, thread_sensitive=False)()
    with _state_lock:
        global _notified_version
        _notified_version = max(_notified_version, current)
    while True:
        await asyncio.sleep(settings.POLICY_POLL_INTERVAL)
        try:
            moved = await sync_to_async(_check_in_thread, thread_sensitive=False)()
        except Exception:
            logger.exception("policy poller: will retry")
            continue
        if moved:
            await recheck_all_sessions()


def reset() -> None:
    """Forget the last announced version (tests: a rolled-back test reuses version numbers)."""
    global _notified_version
    with _state_lock:
        _notified_version = 0
