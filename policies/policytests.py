"""Policy test cases: expected decisions, run against a proposed policy set.

Every save and import runs the enabled cases against the set it would install;
a failing case blocks it with the case, what it got and the determining
policies. `manage.py testpolicies` runs them against the current set.
Evaluation is strict (the request is checked against the schema) and uses the
whole set, as the simulator does; any evaluation error denies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from policies import cedar, impact
from policies.models import PolicyTestCase

_USER_UID = re.compile(r'^User::"([^"]+)"$')


@dataclass(frozen=True)
class _CaseUser:
    """A user a case names that need not exist (what cedar.principal_entity reads)."""

    pk: str
    username: str
    is_staff: bool
    is_authenticated: bool = True

    def get_username(self) -> str:
        return self.username


@dataclass(frozen=True)
class CaseResult:
    case: PolicyTestCase
    allowed: bool
    policies: tuple[str, ...]
    errors: tuple[str, ...]
    problem: str = ""  # the case itself could not be evaluated (an unknown username)

    @property
    def passed(self) -> bool:
        return not self.problem and self.allowed == (self.case.expected == PolicyTestCase.Expected.ALLOW)

    def message(self) -> str:
        case = self.case
        got = "allow" if self.allowed else "deny"
        determining = ", ".join(self.policies) or "none (no policy applied)"
        text = (
            f"policy test {case.name} failed: {case.principal} {case.action} "
            f'{case.resource_type}::"{case.resource_id}" expected {case.expected}, got {got}'
        )
        if self.problem:
            text = f"policy test {case.name} cannot run: {self.problem}"
        else:
            text += f" (determining policies: {determining})"
        if self.errors:
            text += f"; errors: {'; '.join(self.errors)}"
        if case.note:
            text += f". Note: {case.note}"
        return text


def _principal(case: PolicyTestCase) -> tuple[Any, list[str]]:
    spec = case.principal.strip()
    if spec in {"", "anonymous"}:
        return None, []
    users = get_user_model().objects
    # User::"<id>": the user with that id if there is one, else one the case makes up (with its groups).
    match = _USER_UID.match(spec)
    user = users.filter(pk=match.group(1)).first() if match and match.group(1).isdigit() else None
    if match is None:
        user = users.filter(username=spec).first()
        if user is None:
            raise ValueError(f"no user named {spec!r}")
    if user is not None:
        return user, sorted(user.groups.values_list("name", flat=True))
    assert match is not None
    return _CaseUser(match.group(1), f"user{match.group(1)}", case.is_staff), list(case.groups)


def _resource_id(case: PolicyTestCase) -> str:
    """A personal channel may name its owner by username (user.bob), as in the simulator."""
    rid = case.resource_id
    if case.resource_type == "Channel" and rid.startswith("user.") and not rid[5:].isdigit():
        # A name nobody has stays as it is: the channel of a user the case makes up (user.case-alice).
        user = get_user_model().objects.filter(username=rid[5:]).first()
        return f"user.{user.pk}" if user is not None else rid
    return rid


def run_case(case: PolicyTestCase, policy_set: Any, ids: dict[str, str]) -> CaseResult:
    resource_id = _resource_id(case)
    try:
        user, roles = _principal(case)
    except ValueError as exc:
        return CaseResult(case, False, (), (), problem=str(exc))
    context = case.context or {}
    at: datetime | None = parse_datetime(str(context["now"])) if context.get("now") else None
    if at is not None and timezone.is_naive(at):
        at = timezone.make_aware(at, timezone.get_current_timezone())
    scopes = context.get("token_scopes")
    try:
        request = cedar.build_request(
            user=user,
            roles=roles,
            action=case.action,
            resource_type=case.resource_type,
            resource_id=resource_id,
            resource_attrs=case.attrs or {},
            client_ip=context.get("client_ip"),
            token_scopes=settings.OAUTH2_SCOPES if scopes is None else scopes,
            auth_method=str(context.get("auth_method") or ("session" if user is not None else "anonymous")),
            now=at or timezone.now(),
        )
        outcome = cedar.evaluate(policy_set, request, strict=True, ids=ids)
    except (TypeError, ValueError) as exc:
        return CaseResult(case, False, (), (f"{type(exc).__name__}: {exc}",))
    return CaseResult(case, outcome.allowed and not outcome.errors, outcome.policies, outcome.errors)


def run_cases(
    sources: Sequence[cedar.PolicySource], links: Iterable[cedar.Link], cases: Iterable[PolicyTestCase] | None = None
) -> list[CaseResult]:
    """Each enabled case's result against the set of `sources` and `links` (valid: the caller checked)."""
    cases = list(PolicyTestCase.objects.filter(enabled=True) if cases is None else cases)
    if not cases:
        return []
    policy_set = cedar.build_policy_set(sources, links)
    ids = cedar.positional_ids([source.name for source in sources])
    return [run_case(case, policy_set, ids) for case in cases if case.enabled]


def failures(
    sources: Sequence[cedar.PolicySource], links: Iterable[cedar.Link], cases: Iterable[PolicyTestCase] | None = None
) -> list[str]:
    """The message of every failing case (empty: all pass)."""
    return [result.message() for result in run_cases(sources, links, cases) if not result.passed]


def failures_with_edit(*, name: str, text: str, enabled: bool, pk: int | None) -> list[str]:
    """The failing cases with one access policy saved (as the admin form and `access_policy_save` check)."""
    proposed = impact.proposed_with_edit(name=name, text=text, enabled=enabled, pk=pk)
    return failures(proposed.sources, proposed.links)


def case_from_row(row: dict[str, Any]) -> PolicyTestCase:
    """A case from an export file's row (not saved; full_clean it)."""
    case = PolicyTestCase(name=str(row.get("name", "")))
    for key in CASE_FIELDS:
        if key in row and key != "name":
            setattr(case, key, row[key])
    return case


CASE_FIELDS = (
    "name",
    "enabled",
    "principal",
    "groups",
    "is_staff",
    "action",
    "resource_type",
    "resource_id",
    "attrs",
    "context",
    "expected",
    "note",
)
