"""The Cedar engine wrapper: schema, policy-set assembly, validation, requests and decisions.

Nothing here touches the database: `engine.py` loads rows and keeps the parsed
set per process; the admin, the importer and the simulator validate through
`check_policies`. Cedar itself is the policy language and evaluator (cedarpy);
this module only maps webconnect's principals and resources onto the schema in
`schema.cedarschema`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cedarpy

SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.cedarschema"
ANONYMOUS_ID = "anonymous"
UNKNOWN_IP = "0.0.0.0"  # noqa: S104  (a value for "unknown", never bound to)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
ACTIONS = (
    "connect",
    "subscribe",
    "publish",
    "presence",
    "history",
    "read",
    "edit",
    "share",
    "delete",
    "view",
    "administer",
)
RESOURCE_TYPES = ("Channel", "Document", "Dashboard", "Platform")
# Link ids of template-linked policies (shares): "share:<ShareGrant pk>".
LINK_PREFIX = "share:"


@functools.cache
def schema_text() -> str:
    return SCHEMA_PATH.read_text()


@functools.cache
def schema() -> Any:
    """The parsed schema, once per process (parsing it is the expensive part)."""
    return cedarpy.Schema.from_str(schema_text())


# --- Policy texts ------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySource:
    """One AccessPolicy as the engine sees it: its name is its Cedar `@id`."""

    name: str
    text: str


@dataclass(frozen=True)
class Link:
    """A template-linked policy (a share): template name, principal and resource uids."""

    link_id: str
    template: str
    principal: tuple[str, str]  # (type, id): ("User", "3") or ("Role", "editors")
    resource: tuple[str, str]  # ("Document", "12")


@dataclass(frozen=True)
class PolicyError:
    policy: str  # the policy's name (its @id), or "" for the set as a whole
    message: str

    def __str__(self) -> str:
        return f"{self.policy}: {self.message}" if self.policy else self.message


def annotated(source: PolicySource) -> str:
    # The name is the id: the admin never writes @id itself, so ids cannot drift
    # from the row they belong to.
    return f'@id("{source.name}")\n{source.text.strip()}\n'


def parse_one(source: PolicySource) -> tuple[Any, bool, list[PolicyError]]:
    """Parse one policy text on its own: (PolicySet, is_template, errors).

    A syntax error from Cedar carries no line or column, so the error names the
    policy and the admin shows its text beside the message.
    """
    if not NAME_RE.match(source.name):
        return None, False, [PolicyError(source.name, "a name is letters, digits, '_', '.', ':' or '-' (max 100)")]
    if not source.text.strip():
        return None, False, [PolicyError(source.name, "the policy text is empty")]
    try:
        parsed = cedarpy.PolicySet.from_str(annotated(source))
    except ValueError as exc:
        message = str(exc)
        if "duplicate annotation" in message:
            message = "remove the @id annotation: the policy's name is its id"
        return None, False, [PolicyError(source.name, f"syntax error: {message}")]
    templates = parsed.templates()
    count = len(parsed) + len(templates)
    if count != 1:
        return None, False, [PolicyError(source.name, f"write exactly one permit or forbid per policy (found {count})")]
    return parsed, bool(templates), []


# Validation says "attribute `username` on entity type `Anonymous` not found"; evaluation says
# "`Anonymous::"anonymous"` does not have the attribute `username`". Either way the policy
# reads a User attribute without first making sure the principal is a User.
_ANONYMOUS_ATTRIBUTE = re.compile(
    r"attribute `[^`]*` on entity type `Anonymous` not found|`Anonymous::\"[^\"]*\"` does not have the attribute"
)
ANONYMOUS_HINT = (
    "a principal can be Anonymous, which has no attributes: test `principal is User` first, "
    'e.g. `principal is User && principal.username == "bob"`'
)


def with_hint(message: str) -> str:
    """Cedar's message, plus how to fix it when it is the classic "attribute on Anonymous" mistake."""
    if _ANONYMOUS_ATTRIBUTE.search(message) and ANONYMOUS_HINT not in message:
        return f"{message} ({ANONYMOUS_HINT})"
    return message


def check_policies(sources: Sequence[PolicySource], links: Iterable[Link] = ()) -> list[PolicyError]:
    """Every error in a whole policy set (syntax, duplicates, schema, links), per policy name."""
    errors: list[PolicyError] = []
    seen: set[str] = set()
    good: list[PolicySource] = []
    for source in sources:
        if source.name in seen:
            errors.append(PolicyError(source.name, "another policy already has this name"))
            continue
        seen.add(source.name)
        _parsed, _template, problems = parse_one(source)
        errors.extend(problems)
        if not problems:
            good.append(source)
    if not good:
        return errors
    text = "".join(annotated(source) for source in good)
    result = cedarpy.validate_policies(text, schema())
    names = result.id_annotations_by_policy_id
    for error in result.errors:
        name = names.get(error.policy_id, error.policy_id)
        message = error.error.replace(f"for policy `{error.policy_id}`, ", "")
        errors.append(PolicyError(name, with_hint(message)))
    if not errors:
        try:
            build_policy_set(good, links)
        except ValueError as exc:
            errors.append(PolicyError("", f"a share could not be linked to its template: {exc}"))
    return errors


def build_policy_set(sources: Sequence[PolicySource], links: Iterable[Link] = ()) -> Any:
    """The parsed, linked policy set (raises ValueError on bad input)."""
    policy_set = cedarpy.PolicySet.from_str("".join(annotated(source) for source in sources))
    batch = [
        {
            "template_id": link.template,
            "new_id": link.link_id,
            "values": {
                "?principal": {"type": link.principal[0], "id": link.principal[1]},
                "?resource": {"type": link.resource[0], "id": link.resource[1]},
            },
        }
        for link in links
    ]
    return policy_set.with_linked_batch(batch) if batch else policy_set


def template_slots(source: PolicySource) -> list[str]:
    parsed, is_template, _errors = parse_one(source)
    if parsed is None or not is_template:
        return []
    return list(parsed.templates()[0]["slots"])


# --- Requests ------------------------------------------------------------------------


@dataclass(frozen=True)
class CedarRequest:
    """A decision request already mapped onto the schema."""

    request: dict[str, Any]
    entities: list[dict[str, Any]] = field(default_factory=list)


def _uid(type_: str, id_: Any) -> dict[str, str]:
    return {"type": type_, "id": str(id_)}


def _ref(type_: str, id_: Any) -> dict[str, Any]:
    return {"__entity": _uid(type_, id_)}


def _id_list(attrs: dict[str, Any], key: str) -> list[Any]:
    value = attrs.get(key, ())
    if not isinstance(value, list | tuple | set | frozenset):
        raise TypeError(f"resource attribute {key!r} must be a list of user ids, got {type(value).__name__}")
    return [_ref("User", item) for item in value]


def principal_entity(user: Any, roles: Iterable[str]) -> tuple[dict[str, str], list[dict[str, Any]]]:
    if user is None or not getattr(user, "is_authenticated", False):
        uid = _uid("Anonymous", ANONYMOUS_ID)
        return uid, [{"uid": uid, "attrs": {}, "parents": []}]
    uid = _uid("User", user.pk)
    roles = sorted(roles)
    entity = {
        "uid": uid,
        "attrs": {"username": user.get_username(), "is_staff": bool(user.is_staff), "groups": roles},
        "parents": [_uid("Role", role) for role in roles],
    }
    return uid, [entity]


def resource_entity(type_: str, id_: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Map a Resource's attrs (as callers pass them today) onto the schema's entity."""
    data: dict[str, Any]
    if type_ == "Channel":
        namespace = str(attrs.get("namespace") or id_.split(".", 1)[0])
        data = {
            "name": id_,
            "namespace": namespace,
            "classification": str(attrs.get("classification") or ""),
            "anonymous_read": bool(attrs.get("anonymous_read", False)),
        }
        # Personal channels user.<id> belong to that user.
        if namespace == "user" and id_.startswith("user.") and id_[5:]:
            data["owner"] = _ref("User", id_[5:])
    elif type_ == "Document":
        data = {
            "classification": str(attrs.get("classification") or ""),
            "editors": _id_list(attrs, "editor_ids"),
            "viewers": _id_list(attrs, "viewer_ids"),
            "roles": [_ref("Role", role) for role in attrs.get("roles", ())],
        }
        if attrs.get("owner_id") is not None:
            data["owner"] = _ref("User", attrs["owner_id"])
    elif type_ == "Dashboard":
        data = {
            "visibility": str(attrs.get("visibility") or "private"),
            "editors": _id_list(attrs, "editor_ids"),
            "viewers": _id_list(attrs, "viewer_ids"),
        }
        if attrs.get("owner_id") is not None:
            data["owner"] = _ref("User", attrs["owner_id"])
    elif type_ == "Platform":
        data = {}
    else:
        raise ValueError(f"unknown resource type {type_!r}")
    return {"uid": _uid(type_, id_), "attrs": data, "parents": []}


def cedar_datetime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def valid_ip(value: Any) -> str:
    if value:
        try:
            return str(ipaddress.ip_address(str(value).strip()))
        except ValueError:
            pass
    return UNKNOWN_IP


def build_request(
    *,
    user: Any,
    roles: Iterable[str],
    action: str,
    resource_type: str,
    resource_id: str,
    resource_attrs: dict[str, Any],
    client_ip: str | None,
    token_scopes: Iterable[str],
    auth_method: str,
    now: datetime,
) -> CedarRequest:
    principal_uid, entities = principal_entity(user, roles)
    entities.append(resource_entity(resource_type, resource_id, resource_attrs))
    context = {
        "client_ip": {"__extn": {"fn": "ip", "arg": valid_ip(client_ip)}},
        "token_scopes": sorted(token_scopes),
        "auth_method": auth_method,
        "now": {"__extn": {"fn": "datetime", "arg": cedar_datetime(now)}},
    }
    request = {
        "principal": principal_uid,
        "action": _uid("Action", action),
        "resource": _uid(resource_type, resource_id),
        "context": context,
    }
    return CedarRequest(request, entities)


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    policies: tuple[str, ...]
    errors: tuple[str, ...]


def evaluate(policy_set: Any, request: CedarRequest, *, strict: bool = False) -> Outcome:
    """Evaluate; `strict` also checks the request and entities against the schema.

    The hot path skips that check (it doubles the cost of a decision): every
    policy was validated against the schema when saved, and `build_request`
    produces what the schema describes (tests check it with strict=True). A
    mismatch still cannot allow anything: it is an evaluation error, which denies.
    """
    result = cedarpy.is_authorized(request.request, policy_set, request.entities, schema=schema() if strict else None)
    diagnostics = result.diagnostics
    names = diagnostics.id_annotations_by_reason
    policies = tuple(
        reason if reason.startswith(LINK_PREFIX) else names.get(reason, reason) for reason in diagnostics.reasons
    )
    return Outcome(result.allowed, policies, tuple(with_hint(str(error)) for error in diagnostics.errors))
