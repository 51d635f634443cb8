"""The one authorization entry point: `authorize(principal, action, resource, context)`.

Every check in the platform (WebSocket connect/subscribe/publish/presence/
history, document open and share, dashboards, REST views) calls this, and it
fails closed: any error denies. Token scopes are applied here too, so a token
never does more than its scopes allow, whatever the rules say.

Decisions come from the Cedar policy engine (`policies.engine`); its default
policy set, installed by a migration, expresses the built-in rules.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from webconnect.handshake import ConnectionAuth

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


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user (possibly anonymous) and how they authenticated."""

    user: Any
    auth: ConnectionAuth = field(default_factory=lambda: ConnectionAuth(method="session"))

    @property
    def is_authenticated(self) -> bool:
        return bool(self.user is not None and self.user.is_authenticated)


@dataclass(frozen=True)
class Resource:
    """What is acted on: `type` is Channel, Document, Dashboard or Platform.

    `attrs` carries what the rules need, e.g. for a Channel {"namespace": "chat"},
    for a Document {"owner_id": 3, "editor_ids": [..], "viewer_ids": [..]}.
    """

    type: str
    id: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    policies: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def required_scope(action: str, resource: Resource) -> str | None:
    if resource.type == "Dashboard":
        return DASHBOARD_ACTION_SCOPES.get(action)
    return ACTION_SCOPES.get(action)


def authorize(principal: Principal, action: str, resource: Resource, context: dict[str, Any] | None = None) -> Decision:
    """Decide whether `principal` may do `action` on `resource`. Never raises."""
    try:
        scope = required_scope(action, resource)
        if scope is None:
            return Decision(False, reason=f"unknown action {action!r} on {resource.type}")
        if not principal.auth.allows(scope):
            return Decision(False, reason=f"token lacks scope {scope}")
        return _evaluate_rules(principal, action, resource, context or {})
    except Exception as exc:  # fail closed, and say why in the log
        logger.exception("authorization error: %s %s %s:%s", principal.user, action, resource.type, resource.id)
        return Decision(False, errors=(f"{type(exc).__name__}: {exc}",), reason="evaluation error")


async def aauthorize(
    principal: Principal, action: str, resource: Resource, context: dict[str, Any] | None = None
) -> Decision:
    return await sync_to_async(authorize, thread_sensitive=False)(principal, action, resource, context)


def _evaluate_rules(principal: Principal, action: str, resource: Resource, context: dict[str, Any]) -> Decision:
    # The Cedar policy set (policies app) decides: the default policies installed
    # by its migration are the built-in rules (staff, owners, shares, chat.*,
    # personal channels user.<id>), administrators edit them in the admin.
    from policies import engine, watch

    decision = engine.decide(principal, action, resource, context)
    watch.remember_loop()
    return decision


# --- Hooks between the policy engine and the parts that hold live sessions --------
#
# When the policy version moves, every process re-checks what it holds open
# (real-time subscriptions, document rooms) and closes what is now denied. The
# policy engine calls `notify_policy_change()` in each process (after a Redis
# notification, or its periodic fallback check); holders register a coroutine
# with `on_policy_change`.

PolicyChangeCallback = Callable[[], Awaitable[None]]
_policy_change_callbacks: list[PolicyChangeCallback] = []


def on_policy_change(callback: PolicyChangeCallback) -> PolicyChangeCallback:
    """Register a coroutine function run in this process whenever policies change."""
    if callback not in _policy_change_callbacks:
        _policy_change_callbacks.append(callback)
    return callback


async def notify_policy_change() -> None:
    for callback in list(_policy_change_callbacks):
        try:
            await callback()
        except Exception:
            logger.exception("policy-change callback %r failed", callback)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    retry_after: float = 0.0  # seconds until the action may be retried
    limit: str = ""  # the rule that limited it, e.g. "20/second"


async def acheck_rate(principal: Principal, action: str, resource: Resource) -> RateDecision:
    """Consume one unit of every rate limit that applies to this action.

    The rate-limit policies (policies app) replace `_rate_check`; until then
    nothing is limited here.
    """
    return await _rate_check(principal, action, resource)


async def _no_rate_limits(principal: Principal, action: str, resource: Resource) -> RateDecision:
    return RateDecision(True)


_rate_check: Callable[[Principal, str, Resource], Awaitable[RateDecision]] = _no_rate_limits


def set_rate_checker(checker: Callable[[Principal, str, Resource], Awaitable[RateDecision]]) -> None:
    global _rate_check
    _rate_check = checker


# --- Concurrent-connection limits ----------------------------------------------------
#
# Long-lived sockets count against limits per user and per client IP. A socket
# asks to be admitted once it is authorized, refreshes its place on every
# heartbeat (so a dead process's places lapse) and releases it when it closes.
# The policies app installs the implementation; until then nothing is limited.


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
