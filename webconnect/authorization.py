"""The one authorization entry point: `authorize(principal, action, resource, context)`.

Every check in the platform (WebSocket connect/subscribe/publish/presence/
history, document open and share, dashboards, REST views) calls this, and it
fails closed: any error denies, and so does a process where no policy engine
is installed. Token scopes are applied here too, so a token never does more
than its scopes allow, whatever the rules say.

The policies app installs the decision function, the rate checker and the
connection limiter from its `AppConfig.ready()`; this module imports no app.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from webconnect.identity import Decision, Principal, RateDecision, Resource
from webconnect.kernel.outages import is_unavailable

logger = logging.getLogger(__name__)

# Actions by resource type, and the token scope each needs.
ACTION_SCOPES: dict[str, str] = {
    "connect": "realtime:read",
    "subscribe": "realtime:read",
    "presence": "realtime:read",
    "history": "realtime:read",
    "publish": "realtime:write",
    "read": "docs:read",
    "edit": "docs:write",
    "share": "docs:write",
    "delete": "docs:write",
    "view": "dashboards:read",
    "administer": "policies:admin",
}
# Dashboards reuse edit/delete/share with their own scope.
DASHBOARD_ACTION_SCOPES = {
    "view": "dashboards:read",
    "edit": "dashboards:write",
    "delete": "dashboards:write",
    "share": "dashboards:write",
}

Decider = Callable[[Principal, str, Resource, dict[str, Any]], Decision]


def _no_engine(principal: Principal, action: str, resource: Resource, context: dict[str, Any]) -> Decision:
    return Decision(False, reason="no policy engine installed")


_decide: Decider = _no_engine


def set_decider(decider: Decider) -> None:
    """Install the rules (the policies app does, from its ready())."""
    global _decide
    _decide = decider


def required_scope(action: str, resource: Resource) -> str | None:
    if resource.type == "Dashboard":
        return DASHBOARD_ACTION_SCOPES.get(action)
    return ACTION_SCOPES.get(action)


def authorize(
    principal: Principal,
    action: str,
    resource: Resource,
    context: dict[str, Any] | None = None,
    *,
    outage_raises: bool = False,
) -> Decision:
    """Decide whether `principal` may do `action` on `resource`. Never raises, but see `aauthorize`."""
    try:
        scope = required_scope(action, resource)
        if scope is None:
            return Decision(False, reason=f"unknown action {action!r} on {resource.type}")
        if not principal.auth.allows(scope):
            return Decision(False, reason=f"token lacks scope {scope}")
        return _decide(principal, action, resource, context or {})
    except Exception as exc:  # fail closed, and say why in the log
        if outage_raises and is_unavailable(exc):
            raise
        logger.exception("authorization error: %s %s %s:%s", principal.user, action, resource.type, resource.id)
        return Decision(False, errors=(f"{type(exc).__name__}: {exc}",), reason="evaluation error")


async def aauthorize(
    principal: Principal, action: str, resource: Resource, context: dict[str, Any] | None = None
) -> Decision:
    """`authorize` for sockets, off the event loop.

    A storage outage (database, Redis) raises instead of denying: the socket then
    closes with UNAVAILABLE (or answers `unavailable`) and the client retries, where
    a denial would make it give up, or open a document read-only. The worker
    thread's broken database connections are dropped around the call, so a
    database restart does not leave them failing.
    """
    decision: Decision = await database_sync_to_async(authorize, thread_sensitive=False)(
        principal, action, resource, context, outage_raises=True
    )
    return decision


# --- Rate limits -------------------------------------------------------------------------


async def _no_rate_limits(principal: Principal, action: str, resource: Resource) -> RateDecision:
    return RateDecision(True)


_rate_check: Callable[[Principal, str, Resource], Awaitable[RateDecision]] = _no_rate_limits


async def acheck_rate(principal: Principal, action: str, resource: Resource) -> RateDecision:
    """Consume one unit of every rate limit that applies to this action."""
    return await _rate_check(principal, action, resource)


def set_rate_checker(checker: Callable[[Principal, str, Resource], Awaitable[RateDecision]]) -> None:
    global _rate_check
    _rate_check = checker


# --- Concurrent-connection limits ----------------------------------------------------
#
# Long-lived sockets count against limits per user and per client IP. A socket
# asks to be admitted once it is authorized, refreshes its place on every
# heartbeat (so a dead process's places lapse) and releases it when it closes.


class ConnectionLimiter:
    async def admit(self, principal: Principal, connection_id: str) -> RateDecision:
        return RateDecision(True)

    async def refresh(self, principal: Principal, connection_id: str) -> None:
        return None

    async def release(self, principal: Principal, connection_id: str) -> None:
        return None


_connection_limiter = ConnectionLimiter()


def set_connection_limiter(limiter: ConnectionLimiter) -> None:
    global _connection_limiter
    _connection_limiter = limiter


def connection_limiter() -> ConnectionLimiter:
    return _connection_limiter
