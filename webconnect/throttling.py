"""Sign-in throttling, keyed so that an attacker cannot lock a victim out.

Failed sign-ins are counted three ways (the `limits` library's moving window,
exact for low-volume limits, on the configured storage: Redis in production so
every process shares one count):

- per (account, client IP): `LOGIN_FAILURES_PER_ACCOUNT_IP`; over it, that
  address may not try that account again until the window moves on (429);
- per client IP (an IPv6 address counts as its /64): `LOGIN_FAILURES_PER_IP`;
  over it, that address may not try any account (429);
- per account, from anywhere: `LOGIN_FAILURES_PER_ACCOUNT` is a ceiling that
  *slows* rather than locks. Past it, every attempt on the account (the right
  password included, or the delay would tell a guesser which one was right)
  waits `LOGIN_SLOWDOWN_BASE_MS`, doubling with each further failure up to
  `LOGIN_SLOWDOWN_MAX_MS`, before it is checked. A guesser spread over many
  addresses is slowed; the account's owner still signs in, a few seconds late.

A locking per-account limit would let anyone lock anyone out by typing wrong
passwords for them; the per-address limits cannot reach the victim's address.
"""

from __future__ import annotations

import functools
import ipaddress
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


def _slowdown_steps() -> int:
    """Failures past the ceiling after which the delay stops growing."""
    base = max(1, int(settings.LOGIN_SLOWDOWN_BASE_MS))
    ceiling = max(base, int(settings.LOGIN_SLOWDOWN_MAX_MS))
    return math.ceil(math.log2(ceiling / base)) + 1


@functools.cache
def _account_counter(spec: str, steps: int) -> RateLimitItem:
    # A moving window stores at most `amount` hits, so the account's counter
    # holds the ceiling plus the steps up to the longest delay, no more.
    item = parse(spec)
    return type(item)(item.amount + steps, item.multiples, item.namespace)


def _account(username: str) -> str:
    return username.strip().lower()


def _address(client_ip: str) -> str:
    """The unit one client controls: an IPv4 address, or an IPv6 /64."""
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return client_ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def _ids(*parts: str) -> tuple[str, ...]:
    return (settings.RATE_LIMIT_KEY_PREFIX, _NAMESPACE, *parts)


def _refusing_keys(username: str, client_ip: str | None) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
    if not client_ip:
        # No address (not over HTTP): only the account's slowdown applies.
        return []
    return [
        (_limit(settings.LOGIN_FAILURES_PER_ACCOUNT_IP), _ids("account-ip", _account(username), _address(client_ip))),
        (_limit(settings.LOGIN_FAILURES_PER_IP), _ids("ip", _address(client_ip))),
    ]


def _account_key(username: str) -> tuple[RateLimitItem, tuple[str, ...]]:
    return _account_counter(settings.LOGIN_FAILURES_PER_ACCOUNT, _slowdown_steps()), _ids("account", _account(username))


def login_retry_after(*, username: str, client_ip: str | None) -> int:
    """Seconds until this address may try this account again; 0 when not refused."""
    limiter = _limiter()
    wait = 0.0
    for item, identifiers in _refusing_keys(username, client_ip):
        if not limiter.test(item, *identifiers):
            reset_at = limiter.get_window_stats(item, *identifiers).reset_time
            wait = max(wait, reset_at - time.time(), 1.0)
    return math.ceil(wait)


def login_delay(*, username: str) -> float:
    """Seconds an attempt on this account waits before it is checked; 0.0 under the ceiling."""
    if not username.strip():
        return 0.0
    item, identifiers = _account_key(username)
    failures = item.amount - _limiter().get_window_stats(item, *identifiers).remaining
    past_ceiling = failures - _limit(settings.LOGIN_FAILURES_PER_ACCOUNT).amount
    if past_ceiling < 0:
        return 0.0
    delay_ms: int = min(int(settings.LOGIN_SLOWDOWN_BASE_MS) * 2**past_ceiling, int(settings.LOGIN_SLOWDOWN_MAX_MS))
    return max(0.0, delay_ms / 1000)


def login_failed(*, username: str, client_ip: str | None) -> None:
    limiter = _limiter()
    for item, identifiers in [*_refusing_keys(username, client_ip), _account_key(username)]:
        limiter.hit(item, *identifiers)


def login_throttle_reset(*, username: str, client_ip: str | None) -> None:
    """A successful sign-in clears this address's failures for the account.

    The account's own count is left to expire: clearing it would let a guesser
    shed the slowdown whenever the owner signs in.
    """
    for item, identifiers in _refusing_keys(username, client_ip)[:1]:
        _limiter().clear(item, *identifiers)
