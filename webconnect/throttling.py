"""Sign-in throttling: failed attempts counted per account and per client IP.

Uses the `limits` library's moving window (exact for low-volume limits) on the
configured storage, Redis in production so every process shares one count.
"""

from __future__ import annotations

import functools
import math
import time

from django.conf import settings
from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

# limits keys carry the strategy name so another strategy on the same storage
# never touches these keys (two strategies on one key fail with WRONGTYPE).
_NAMESPACE = "login-failures-moving"


@functools.cache
def _limiter() -> MovingWindowRateLimiter:
    storage = storage_from_string(settings.RATE_LIMIT_STORAGE_URI)
    if not isinstance(storage, Storage):
        raise TypeError(f"RATE_LIMIT_STORAGE_URI must name a synchronous storage, got {type(storage).__name__}")
    return MovingWindowRateLimiter(storage)


@functools.cache
def _limit(spec: str) -> RateLimitItem:
    return parse(spec)


def _keys(username: str, client_ip: str | None) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
    keys: list[tuple[RateLimitItem, tuple[str, ...]]] = [
        (_limit(settings.LOGIN_FAILURES_PER_ACCOUNT), (_NAMESPACE, "account", username.strip().lower()))
    ]
    if client_ip:
        keys.append((_limit(settings.LOGIN_FAILURES_PER_IP), (_NAMESPACE, "ip", client_ip)))
    return keys


def login_retry_after(*, username: str, client_ip: str | None) -> int:
    """Seconds until a sign-in may be attempted again; 0 when not throttled."""
    limiter = _limiter()
    wait = 0.0
    for item, identifiers in _keys(username, client_ip):
        if not limiter.test(item, *identifiers):
            reset_at = limiter.get_window_stats(item, *identifiers).reset_time
            wait = max(wait, reset_at - time.time(), 1.0)
    return math.ceil(wait)


def login_failed(*, username: str, client_ip: str | None) -> None:
    limiter = _limiter()
    for item, identifiers in _keys(username, client_ip):
        limiter.hit(item, *identifiers)


def login_throttle_reset(*, username: str) -> None:
    """A successful sign-in clears the account's failures (not the IP's)."""
    item, identifiers = _keys(username, None)[0]
    _limiter().clear(item, *identifiers)
