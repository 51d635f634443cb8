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
import json
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
    return _linked(cedarpy.PolicySet.from_str("".join(annotated(source) for source in sources)), links)


def _linked(policy_set: Any, links: Iterable[Link]) -> Any:
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


# --- Slicing: which policies can apply to a request -----------------------------------
#
# Cedar evaluates every policy in the set for every request: with 115 policies
# that is most of a decision's cost, though a request for one channel can only
# be decided by a few of them. A `Scope` says which resources a policy can
# apply to, read off its head and the first test of its first `when`; a slice
# (the policies whose scope admits a resource type and id) decides exactly as
# the whole set does. A dropped policy is one Cedar would skip without an
# error: its head does not match (heads never error), or its condition starts
# with `resource.name == "<another channel>"` on a Channel (every Channel entity
# has a name, so that test is false, not an error, and `&&` stops there).
# Resource entities have no parents, so `resource in X` is `resource == X`.
# Slices are per resource, not per action: a parsed set costs tens of KiB, and
# a policy whose action does not match is cheap for Cedar.


@dataclass(frozen=True)
class Scope:
    """The resources a policy can apply to; None: any."""

    resource_types: frozenset[str] | None = None
    resource_uid: tuple[str, str] | None = None
    channel_name: str | None = None

    def admits(self, resource_type: str, resource_id: str) -> bool:
        if self.resource_types is not None and resource_type not in self.resource_types:
            return False
        if self.resource_uid is not None and self.resource_uid != (resource_type, resource_id):
            return False
        return not (self.channel_name is not None and resource_type == "Channel" and self.channel_name != resource_id)


ANY_SCOPE = Scope()


def _est_uid(clause: dict[str, Any], slots: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    if "slot" in clause:
        return slots.get(clause["slot"])
    entity = clause.get("entity")
    if isinstance(entity, dict) and "type" in entity and "id" in entity:
        return (str(entity["type"]), str(entity["id"]))
    return None


def _resource_name_test(body: Any) -> str | None:
    """The channel name in a leading `resource.name == "..."` test (either side), else None."""
    while isinstance(body, dict) and set(body) == {"&&"}:
        body = body["&&"]["left"]
    if not (isinstance(body, dict) and set(body) == {"=="}):
        return None
    sides = (body["=="].get("left"), body["=="].get("right"))
    name_attr = {".": {"left": {"Var": "resource"}, "attr": "name"}}
    for attr, value in (sides, sides[::-1]):
        literal = value.get("Value") if isinstance(value, dict) and len(value) == 1 else None
        if attr == name_attr and isinstance(literal, str):
            return literal
    return None


def scope_of(est: dict[str, Any], slots: dict[str, tuple[str, str]] | None = None) -> Scope:
    """A policy's Scope from its JSON form (Cedar's EST); a shape not understood admits everything."""
    slots = slots or {}
    types: frozenset[str] | None = None
    uid: tuple[str, str] | None = None
    resource = est.get("resource", {})
    op = resource.get("op")
    if op in {"==", "in"}:
        uid = _est_uid(resource, slots)
    elif op == "is":
        types = frozenset([str(resource["entity_type"])])
        if isinstance(resource.get("in"), dict):
            uid = _est_uid(resource["in"], slots)
    if uid is not None:
        types = frozenset([uid[0]]) if types is None else types & {uid[0]}
    channel = None
    conditions = est.get("conditions") or []
    if conditions and conditions[0].get("kind") == "when":
        channel = _resource_name_test(conditions[0].get("body"))
    return Scope(types, uid, channel)


def _context_reads(node: Any, keys: set[str]) -> bool:
    """Add the context attributes `node` reads to `keys`; False if it uses `context` some other way."""
    if isinstance(node, dict):
        for op in (".", "has"):
            inner = node.get(op)
            if len(node) == 1 and isinstance(inner, dict) and inner.get("left") == {"Var": "context"}:
                keys.add(str(inner.get("attr")))
                return True
        if node == {"Var": "context"}:
            return False
        return all(_context_reads(value, keys) for value in node.values())
    if isinstance(node, list):
        return all(_context_reads(value, keys) for value in node)
    return True


@dataclass(frozen=True)
class IndexedPolicy:
    name: str
    text: str  # annotated
    scope: Scope


@dataclass(frozen=True)
class Parsed:
    """A parsed policy set and its names by Cedar's positional ids (which its error messages use)."""

    policy_set: Any
    ids: dict[str, str]


def positional_ids(names: Sequence[str]) -> dict[str, str]:
    """Cedar numbers the policies and templates of a parsed text in order: policy0, policy1, ..."""
    return {f"policy{n}": name for n, name in enumerate(names)}


@dataclass(frozen=True)
class PolicyIndex:
    """The set's policies with their scopes, to build slices from (see `slice_for`)."""

    statics: tuple[IndexedPolicy, ...]
    templates: dict[str, str]  # template name -> annotated text
    links: tuple[tuple[Link, Scope], ...]
    # (type, id) pairs some scope names, channel names some condition tests: other ids share one slice.
    named: frozenset[tuple[str, str]]
    context_keys: frozenset[str] | None  # the context attributes any policy reads; None: all

    def slice_key(self, resource_type: str, resource_id: str) -> tuple[str, str | None]:
        named = (resource_type, resource_id) in self.named
        return (resource_type, resource_id if named else None)

    def slice_for(self, resource_type: str, resource_id: str | None) -> Parsed | None:
        """The parsed policies that can apply (None: none can, the answer is a plain deny).

        `resource_id` None stands for any id no scope names."""
        rid = resource_id if resource_id is not None else "\x00"  # matches no named id
        statics = [p for p in self.statics if p.scope.admits(resource_type, rid)]
        names = [p.name for p in statics]
        texts = [p.text for p in statics]
        links = [link for link, scope in self.links if scope.admits(resource_type, rid)]
        templates = sorted({link.template for link in links})
        names.extend(templates)
        texts.extend(self.templates[name] for name in templates)
        if not texts:
            return None
        return Parsed(_linked(cedarpy.PolicySet.from_str("".join(texts)), links), positional_ids(names))


@dataclass(frozen=True)
class _Read:
    """What the index needs of one policy text, kept per process across versions."""

    est: dict[str, Any] | None  # the JSON form, kept for templates (their links' scopes need it)
    scope: Scope
    context_keys: frozenset[str] | None  # None: uses `context` as a whole


# Annotated text -> _Read. Cedar's JSON conversion costs about 0.2 ms a policy,
# ten times its parse: a new version (a share, a group change) reads only the
# texts it has not seen.
_reads: dict[str, _Read] = {}
_MAX_READS = 20_000


def _read_all(texts: dict[str, str]) -> dict[str, _Read]:
    """Each policy's _Read by name (texts: name -> annotated text, as parsed before)."""
    new = {name: text for name, text in texts.items() if text not in _reads}
    if new:
        est = json.loads(cedarpy.policies_to_json_str("".join(new.values())))
        if len(_reads) + len(new) > _MAX_READS:
            _reads.clear()
        for is_template, policies in ((False, est.get("staticPolicies", {})), (True, est.get("templates", {}))):
            for policy in policies.values():
                keys: set[str] = set()
                whole = not _context_reads(policy.get("conditions", []), keys)
                read = _Read(policy if is_template else None, scope_of(policy), None if whole else frozenset(keys))
                _reads[new[policy.get("annotations", {}).get("id")]] = read
    return {name: _reads[text] for name, text in texts.items()}


def build_index(sources: Sequence[PolicySource], links: Iterable[Link] = ()) -> PolicyIndex:
    texts = {source.name: annotated(source) for source in sources}
    statics: list[IndexedPolicy] = []
    templates: dict[str, dict[str, Any]] = {}
    context_keys: set[str] | None = set()
    for name, read in _read_all(texts).items():
        if context_keys is not None:
            context_keys = None if read.context_keys is None else context_keys | read.context_keys
        if read.est is not None:
            templates[name] = read.est
        else:
            statics.append(IndexedPolicy(name, texts[name], read.scope))
    linked = []
    for link in links:
        template = templates.get(link.template)
        slots = {"?principal": link.principal, "?resource": link.resource}
        linked.append((link, scope_of(template, slots) if template is not None else ANY_SCOPE))
    named: set[tuple[str, str]] = set()
    for scope in [p.scope for p in statics] + [scope for _link, scope in linked]:
        if scope.resource_uid is not None:
            named.add(scope.resource_uid)
        if scope.channel_name is not None:
            named.add(("Channel", scope.channel_name))
    return PolicyIndex(
        tuple(statics),
        {name: texts[name] for name in templates},
        tuple(linked),
        frozenset(named),
        frozenset(context_keys) if context_keys is not None else None,
    )


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


NO_POLICY = Outcome(False, (), ())  # what Cedar answers when no policy applies


def evaluate(
    policy_set: Any, request: CedarRequest, *, strict: bool = False, ids: dict[str, str] | None = None
) -> Outcome:
    """Evaluate; `strict` also checks the request and entities against the schema.

    The hot path skips that check (it doubles the cost of a decision): every
    policy was validated against the schema when saved, and `build_request`
    produces what the schema describes (tests check it with strict=True). A
    mismatch still cannot allow anything: it is an evaluation error, which denies.
    """
    result = cedarpy.is_authorized(request.request, policy_set, request.entities, schema=schema() if strict else None)
    return _outcome(result, ids or {})


# --- The hot path: requests from parts serialised once ----------------------------------
#
# Building the dicts above and letting cedarpy serialise them costs as much as a
# small decision: the engine keeps each principal's and resource's entity JSON,
# the parsed entity set of a (principal, resource) pair and the context JSON,
# and sends Cedar strings and handles.


def principal_json(user: Any, roles: Iterable[str]) -> tuple[dict[str, str], str]:
    uid, [entity] = principal_entity(user, roles)
    return uid, json.dumps(entity)


def resource_json(type_: str, id_: str, attrs: dict[str, Any]) -> str:
    return json.dumps(resource_entity(type_, id_, attrs))


def entity_set(entity_jsons: Iterable[str]) -> Any:
    """The parsed entities (a cedarpy handle), from entity JSON texts with distinct uids."""
    return cedarpy.Entities.from_json_str(f"[{','.join(entity_jsons)}]")


def context_json(
    *, client_ip: str | None, token_scopes: Iterable[str], auth_method: str, now: str, keys: frozenset[str] | None
) -> str:
    """The request context as Cedar JSON; only `keys` (the attributes some policy reads) when given."""
    context = {
        "client_ip": {"__extn": {"fn": "ip", "arg": valid_ip(client_ip)}},
        "token_scopes": sorted(token_scopes),
        "auth_method": auth_method,
        "now": {"__extn": {"fn": "datetime", "arg": now}},
    }
    if keys is not None:
        context = {key: value for key, value in context.items() if key in keys}
    return json.dumps(context)


def request_dict(principal_uid: dict[str, str], action: str, type_: str, id_: str, context: str) -> dict[str, Any]:
    return {
        "principal": principal_uid,
        "action": {"type": "Action", "id": action},
        "resource": {"type": type_, "id": id_},
        "context": context,
    }


def evaluate_many(parsed: Parsed, requests: list[dict[str, Any]], entities: Any) -> list[Outcome]:
    """Evaluate requests (from `request_dict`) against one parsed entity set, in one Cedar call."""
    results = cedarpy.is_authorized_batch(requests, parsed.policy_set, entities)
    return [_outcome(result, parsed.ids) for result in results]


_POSITIONAL_ID = re.compile(r"policy `(policy\d+)`")


def _outcome(result: Any, ids: dict[str, str]) -> Outcome:
    diagnostics = result.diagnostics
    names = diagnostics.id_annotations_by_reason
    # Sorted: Cedar's order follows its positional ids, which differ between a slice and the whole set.
    policies = tuple(
        sorted(
            reason if reason.startswith(LINK_PREFIX) else names.get(reason, reason) for reason in diagnostics.reasons
        )
    )
    errors = (
        _POSITIONAL_ID.sub(lambda match: f"policy `{ids.get(match.group(1), match.group(1))}`", str(error))
        for error in diagnostics.errors
    )
    return Outcome(result.allowed, policies, tuple(sorted(with_hint(error) for error in errors)))
