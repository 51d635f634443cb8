"""The policy simulator: one decision for a chosen user or token, resource and context.

Used by the admin page and `POST /api/policies/evaluate/`. It applies the
same token-scope check as `authorize()` and evaluates against the current
policy set without the decision cache, and it does not audit (a simulated
denial is not an event).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from policies import cedar, engine, impact
from policies.explain import Explanation, explain
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
    resource: str = ""  # the resource as evaluated (usernames resolved), e.g. Channel::"user.3"
    explanation: Explanation | None = None  # the determining policies' text, or the closest permits


_USER_UID = re.compile(r'^User::"(\d+)"$')
USER_ID_ATTRS = ("owner_id", "editor_ids", "viewer_ids")


def user_lookup(value: str) -> Any | None:
    """The user a simulator field names: a username, `User::"<id>"`, or (if no one has that username) an id."""
    value = value.strip()
    users = get_user_model().objects
    if match := _USER_UID.match(value):
        return users.filter(pk=int(match.group(1))).first()
    user = users.filter(username=value).first()
    if user is None and value.isdigit():
        user = users.filter(pk=int(value)).first()
    return user


def _user_id(value: Any, where: str) -> Any:
    if isinstance(value, int) or not isinstance(value, str):
        return value  # an id already (or a malformed value, which the request builder reports)
    user = user_lookup(value)
    if user is None and value.strip().isdigit():
        return value.strip()  # an id nobody has (yet): still worth simulating
    if user is None:
        raise SimulationError(f"no user named {value!r} ({where})")
    return user.pk


def resolve_usernames(resource_type: str, resource_id: str, attrs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Usernames where the platform passes user ids, turned into ids: in `owner_id`,
    `editor_ids` and `viewer_ids`, and in a personal channel's name (`user.bob` is `user.<bob's id>`)."""
    resolved = dict(attrs)
    for key in USER_ID_ATTRS:
        if key not in resolved:
            continue
        value = resolved[key]
        if key.endswith("_ids") and isinstance(value, list):
            resolved[key] = [_user_id(item, f"in {key}") for item in value]
        else:
            resolved[key] = _user_id(value, key)
    if resource_type == "Channel" and resource_id.startswith("user.") and not resource_id[5:].isdigit():
        resource_id = f"user.{_user_id(resource_id[5:], 'in the personal channel name')}"
    return resource_id, resolved


def principal_for(
    *, username: str = "", token: str = "", client_ip: str | None = None, groups: Sequence[str] | None = None
) -> Principal:
    """A principal from a username (a browser session) or a pasted access token, or anonymous.

    `username` may also be `User::"<id>"` or an id, as a policy names users. With
    `groups`, the user is evaluated as a member of exactly those groups (what an
    identity provider's groups would grant); without a username, as someone
    signed in (`User::"0"`, nobody's id) who is a member of them."""
    if groups is not None:
        names = tuple(sorted({name.strip() for name in groups if name.strip()}))
        if token:
            raise SimulationError("groups are evaluated for a user, not for a token")
        if username:
            found = user_lookup(username)
            if found is None:
                raise SimulationError(f"no user named {username!r}")
            member = copy.copy(found)
        else:
            member = get_user_model()(pk=0, username="member of " + (", ".join(names) or "no group"))
        member.simulated_groups = names
        return principal_for_user(member, client_ip=client_ip)
    if token:
        access = access_token_lookup(token, include_expired=True)
        if access is None:
            raise SimulationError("no access token matches what was pasted")
        if access.expires <= timezone.now():
            raise SimulationError("that access token has expired")
        return principal_for_user(access.user, auth=token_auth(access, client_ip))
    if username:
        user = user_lookup(username)
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
    snap = engine.snapshot()
    try:
        resource_id, attrs = resolve_usernames(resource_type, resource_id, attrs or {})
    except SimulationError as exc:
        return Simulation(Decision(False, errors=(str(exc),), reason=str(exc)), "-", snap.version)
    resource = Resource(resource_type, resource_id, attrs)
    user = principal.user
    who = f'{user.get_username()} (User::"{user.pk}")' if principal.is_authenticated else "anonymous"
    if getattr(user, "simulated_groups", None) is not None:
        who += f" (groups: {', '.join(user.simulated_groups) or 'none'})"
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
    current = impact.PolicySet.current()
    user = principal.user if principal.is_authenticated else None
    explanation = explain(
        allowed=decision.allowed,
        determining=decision.policies,
        sources=current.sources,
        links=current.links,
        principal=("User", str(user.pk)) if user is not None else ("Anonymous", cedar.ANONYMOUS_ID),
        roles=user.groups.values_list("name", flat=True) if user is not None else (),
        action=action,
        resource=(resource_type, resource_id),
    )
    return Simulation(decision, who, snap.version, f'{resource_type}::"{resource_id}"', explanation)
