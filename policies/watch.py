"""Telling every process that the policy version moved.

The saving process announces the new version after commit: it marks its own
cache stale, publishes the version on Redis (POLICY_NOTIFY_CHANNEL) when Redis
is configured, and runs `notify_policy_change()` so holders of live sessions
re-check them. Server processes run a watcher thread that listens on that
channel and, as the fallback for a lost message or a Redis outage, reads the
version from the database every POLICY_POLL_INTERVAL seconds; either way it
reloads and runs `notify_policy_change()` on the server's event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from concurrent.futures import Future
from typing import Any

# Imported here, in the importing thread: a first `import redis` racing between
# the watcher thread and `limits` (which reads redis.__version__) saw a
# half-initialised module.
import redis
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.db import close_old_connections

from policies import engine, metrics, selectors

logger = logging.getLogger(__name__)

_state_lock = threading.Lock()
_notified_version = 0
_loop: asyncio.AbstractEventLoop | None = None
_watcher: threading.Thread | None = None
_stop = threading.Event()


def remember_loop(loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Note the event loop that holds live sessions (and start the watcher in servers).

    Called on every decision; from a sync_to_async worker thread the loop is the
    one asgiref recorded for that thread.
    """
    global _loop
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is None:
        return
    if _loop is not loop:
        _loop = loop
    if settings.POLICY_WATCH and _watcher is None:
        start_watcher()


def _dispatch_notify() -> Future[Any] | None:
    """Run notify_policy_change() on the loop that holds live sessions."""
    from webconnect.authorization import notify_policy_change

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        running.create_task(notify_policy_change())
        return None
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None) or _loop
    if loop is not None and loop.is_running() and not loop.is_closed():
        # In an empty context: from a sync_to_async thread (a view that saved a share)
        # the task would inherit that thread's asgiref executor context and its
        # database calls would deadlock on, or outlive, the request's executor.
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, notify_policy_change(), loop)
    # No loop in this process (a management command, a sync test): run it here.
    asyncio.run(notify_policy_change())
    return None


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
    """After commit, in the saving process: local invalidation, Redis, live-session re-check."""
    engine.mark_stale()
    metrics.policy_reloads.inc()
    if settings.REDIS_URL:
        try:
            _redis().publish(settings.POLICY_NOTIFY_CHANNEL, str(version))
        except Exception:
            # Other processes still see it within POLICY_POLL_INTERVAL.
            logger.exception("could not publish policy version %s", version)
    if version_moved(version):
        try:
            _dispatch_notify()
        except Exception:
            logger.exception("policy-change notification failed")


def _redis() -> Any:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


def check_once() -> bool:
    """Read the version from the database; on a change reload and notify. True if it changed."""
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
    logger.info("policy version is now %s: re-checking live sessions", version)
    future = _dispatch_notify()
    if future is not None:
        try:
            future.result(timeout=30)
        except Exception:
            logger.exception("policy-change callbacks failed")
    return True


def _watch() -> None:
    interval = settings.POLICY_POLL_INTERVAL
    pubsub = None
    while not _stop.is_set():
        try:
            if settings.REDIS_URL and pubsub is None:
                pubsub = _redis().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(settings.POLICY_NOTIFY_CHANNEL)
            if pubsub is not None:
                # Blocks up to the poll interval; a message just ends the wait early.
                pubsub.get_message(timeout=interval)
            else:
                _stop.wait(interval)
            try:
                check_once()
            finally:
                # This thread's connection must not outlive the database's limits.
                close_old_connections()
        except Exception:
            logger.exception("policy watcher: will retry")
            if pubsub is not None:
                try:
                    pubsub.close()
                except Exception:
                    logger.debug("closing pubsub failed", exc_info=True)
                pubsub = None
            _stop.wait(interval)


def start_watcher() -> None:
    global _watcher
    with _state_lock:
        if _watcher is not None:
            return
        version = engine.loaded_version()
        global _notified_version
        _notified_version = max(_notified_version, version or 0)
        _watcher = threading.Thread(target=_watch, name="policy-watcher", daemon=True)
        _watcher.start()


def reset() -> None:
    """Forget the last announced version (tests: a rolled-back test reuses version numbers)."""
    global _notified_version
    with _state_lock:
        _notified_version = 0
