"""The policy simulator: one decision for a chosen user or token, resource and context.

Used by the admin page and `POST /api/policies/evaluate/`. It applies the
same token-scope check as `authorize()` and evaluates against the current
policy set without the decision cache, and it does not audit (a simulated
denial is not an event).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from policies import engine
from webconnect.authorization import required_scope
from webconnect.identity import (
    Decision,
    Principal,
    Resource,
    access_token_lookup,
    principal_for_user,
    token_auth,
)


class SimulationError(ValueError):
    """Bad simulator input (unknown user, invalid token): shown to the admin as is."""


@dataclass(frozen=True)
class Simulation:
    decision: Decision
    principal: str
    version: int


def principal_for(*, username: str = "", token: str = "", client_ip: str | None = None) -> Principal:
    """A principal from a username (a browser session) or a pasted access token, or anonymous."""
    if token:
        access = access_token_lookup(token, include_expired=True)
        if access is None:
            raise SimulationError("no access token matches what was pasted")
        if access.expires <= timezone.now():
            raise SimulationError("that access token has expired")
        return principal_for_user(access.user, auth=token_auth(access, client_ip))
    if username:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise SimulationError(f"no user named {username!r}")
        return principal_for_user(user, client_ip=client_ip)
    return principal_for_user(None, client_ip=client_ip)


def simulate(
    *,
    principal: Principal,
    action: str,
    resource_type: str,
    resource_id: str,
    attrs: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Simulation:
    resource = Resource(resource_type, resource_id, attrs or {})
    snap = engine.snapshot()
    who = principal.user.get_username() if principal.is_authenticated else "anonymous"
    if principal.auth.method == "bearer":
        who += f" (token: {' '.join(sorted(principal.auth.scopes or ()))})"
    scope = required_scope(action, resource)
    if scope is None:
        return Simulation(Decision(False, reason=f"unknown action {action!r} on {resource_type}"), who, snap.version)
    if not principal.auth.allows(scope):
        return Simulation(Decision(False, reason=f"token lacks scope {scope}"), who, snap.version)
    context: dict[str, Any] = {"client_ip": principal.auth.client_ip}
    if at is not None:
        context["now"] = at
    try:
        decision = engine.evaluate(snap, principal, action, resource, context, audit=False, strict=True)
    except Exception as exc:
        decision = Decision(False, errors=(f"{type(exc).__name__}: {exc}",), reason="evaluation error")
    return Simulation(decision, who, snap.version)
