"""Policy semantics through the one entry point, authorize(), on the Cedar engine."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group

from policies.models import AccessPolicy, ShareGrant
from policies.services import access_policy_save, share_grant, share_revoke
from webconnect.authorization import authorize
from webconnect.identity import ConnectionAuth, Principal, Resource

pytestmark = pytest.mark.django_db


def add_policy(name: str, text: str) -> AccessPolicy:
    return access_policy_save(policy=AccessPolicy(name=name, text=text), actor=None)


def from_ip(user: Any, ip: str, method: str = "session") -> Principal:
    return Principal(user, ConnectionAuth(method=method, client_ip=ip))


def test_a_fresh_install_has_the_default_policy_set() -> None:
    names = set(AccessPolicy.objects.values_list("name", flat=True))
    assert {"staff-administer", "owner-documents", "signed-in-chat", "share-viewer", "share-editor"} <= names
    assert AccessPolicy.objects.get(name="share-viewer").is_template


def test_default_deny_names_no_policy(alice: Any) -> None:
    decision = authorize(Principal(alice), "subscribe", Resource("Channel", "ops.secrets"))
    assert not decision
    assert decision.policies == () and decision.reason == "no policy permits this"


def test_a_permit_names_the_policy_that_decided(alice: Any, admin_user: Any) -> None:
    assert authorize(Principal(alice), "publish", Resource("Channel", "chat.lobby")).policies == ("signed-in-chat",)
    staff = authorize(Principal(admin_user), "administer", Resource("Platform", "webconnect"))
    assert staff and staff.policies == ("staff-administer",)


def test_a_role_grant_applies_to_members_of_the_group_only(alice: Any, bob: Any) -> None:
    ops = Group.objects.create(name="ops")
    add_policy(
        "ops-channels",
        'permit(principal in Role::"ops", action in [Action::"subscribe", Action::"publish"], resource is Channel)\n'
        'when { resource.namespace == "ops" };',
    )
    alice.groups.add(ops)  # group membership moves the policy version
    assert authorize(Principal(alice), "subscribe", Resource("Channel", "ops.alerts")).policies == ("ops-channels",)
    assert not authorize(Principal(bob), "subscribe", Resource("Channel", "ops.alerts"))
    alice.groups.remove(ops)
    assert not authorize(Principal(alice), "subscribe", Resource("Channel", "ops.alerts"))


def test_the_owner_rule_and_attrs_passed_by_callers(alice: Any, bob: Any, make_user: Callable[..., Any]) -> None:
    carol = make_user("carol")
    doc = Resource("Document", "7", {"owner_id": alice.pk, "editor_ids": [bob.pk], "viewer_ids": [carol.pk]})
    assert authorize(Principal(alice), "share", doc).policies == ("owner-documents",)
    assert authorize(Principal(bob), "edit", doc) and not authorize(Principal(bob), "share", doc)
    assert authorize(Principal(carol), "read", doc) and not authorize(Principal(carol), "edit", doc)
    board = Resource("Dashboard", "3", {"owner_id": bob.pk, "visibility": "public"})
    assert authorize(Principal(bob), "delete", board)
    assert authorize(Principal(alice), "view", board) and not authorize(Principal(alice), "edit", board)


@pytest.mark.usefixtures("no_policy_tests")
def test_an_ip_range_condition(alice: Any) -> None:
    add_policy(
        "chat-from-office-only",
        'forbid(principal, action, resource is Channel)\nunless { context.client_ip.isInRange(ip("10.0.0.0/8")) };',
    )
    lobby = Resource("Channel", "chat.lobby")
    assert authorize(from_ip(alice, "10.1.2.3"), "publish", lobby)
    outside = authorize(from_ip(alice, "203.0.113.9"), "publish", lobby)
    assert not outside and outside.policies == ("chat-from-office-only",)
    assert "forbidden by chat-from-office-only" in outside.reason
    # An unknown address (0.0.0.0) is outside every range you would allow.
    assert not authorize(Principal(alice), "publish", lobby)
    # The caller's context may name the address too.
    assert authorize(Principal(alice), "publish", lobby, {"client_ip": "10.9.9.9"})


def test_forbid_beats_permit_even_for_staff(admin_user: Any, alice: Any) -> None:
    contractors = Group.objects.create(name="contractors")
    admin_user.groups.add(contractors)
    add_policy(
        "no-contractors-in-finance",
        'forbid(principal in Role::"contractors", action, resource is Channel)\n'
        'when { resource.name like "chat.finance*" };',
    )
    assert not authorize(Principal(admin_user), "subscribe", Resource("Channel", "chat.finance-q3"))
    assert authorize(Principal(admin_user), "subscribe", Resource("Channel", "chat.general"))
    assert authorize(Principal(alice), "subscribe", Resource("Channel", "chat.finance-q3"))


def test_a_template_linked_share_and_its_revocation(alice: Any, bob: Any) -> None:
    doc = Resource("Document", "42", {"owner_id": alice.pk})
    assert not authorize(Principal(bob), "read", doc)
    grant = share_grant(resource_type="Document", resource_id=42, role="viewer", user=bob, actor=alice)
    decision = authorize(Principal(bob), "read", doc)
    assert decision and decision.policies == (f"share:{grant.pk}",)
    assert not authorize(Principal(bob), "edit", doc)
    share_grant(resource_type="Document", resource_id=42, role="editor", user=bob, actor=alice)
    assert authorize(Principal(bob), "edit", doc)
    assert ShareGrant.objects.count() == 1  # one role per user per resource: editor replaced viewer
    assert share_revoke(resource_type="Document", resource_id=42, user=bob) == 1
    assert not authorize(Principal(bob), "read", doc)


def test_a_share_to_a_role_reaches_its_members(alice: Any, bob: Any) -> None:
    team = Group.objects.create(name="team")
    bob.groups.add(team)
    share_grant(resource_type="Dashboard", resource_id="9", role="viewer", group_name="team", actor=alice)
    assert authorize(Principal(bob), "view", Resource("Dashboard", "9", {"owner_id": alice.pk}))
    assert not authorize(Principal(bob), "edit", Resource("Dashboard", "9", {"owner_id": alice.pk}))


def test_token_scopes_narrow_what_a_user_may_do(alice: Any) -> None:
    doc = Resource("Document", "5", {"owner_id": alice.pk})
    reader = Principal(alice, ConnectionAuth(method="bearer", scopes=frozenset({"docs:read"})))
    assert authorize(reader, "read", doc)
    denied = authorize(reader, "edit", doc)
    assert not denied and "docs:write" in denied.reason
    # Policies see the scopes too: forbid deleting with any token at all.
    add_policy(
        "no-delete-by-token",
        'forbid(principal, action == Action::"delete", resource)\nwhen { context.auth_method == "bearer" };',
    )
    writer = Principal(alice, ConnectionAuth(method="bearer", scopes=frozenset({"docs:read", "docs:write"})))
    assert authorize(writer, "edit", doc)
    assert not authorize(writer, "delete", doc)
    assert authorize(Principal(alice), "delete", doc)  # a browser session


def test_anonymous_and_bad_input_are_denied(alice: Any) -> None:
    anonymous = Principal(AnonymousUser(), ConnectionAuth(method="anonymous", scopes=frozenset()))
    assert not authorize(anonymous, "read", Resource("Document", "1", {"owner_id": alice.pk}))
    assert not authorize(Principal(alice), "read", Resource("Spaceship", "1"))
    broken = authorize(Principal(alice), "read", Resource("Document", "1", {"editor_ids": "everyone"}))
    assert not broken and broken.errors


def test_denials_are_audited_once_per_window(alice: Any) -> None:
    from webconnect.models import AuditEvent

    for _ in range(5):
        assert not authorize(Principal(alice), "subscribe", Resource("Channel", "ops.secrets"))
    events = AuditEvent.objects.filter(action="policy.denied", target="Channel::ops.secrets")
    assert events.count() == 1
    assert events.get().details["reason"] == "no policy permits this"


@pytest.mark.usefixtures("no_policy_tests")
def test_decisions_are_cached_until_the_version_moves(alice: Any) -> None:
    from policies import engine

    lobby = Resource("Channel", "chat.lobby")
    assert authorize(Principal(alice), "publish", lobby)
    assert len(engine._decisions) == 1
    add_policy("no-chat", "forbid(principal, action, resource is Channel);")
    assert not authorize(Principal(alice), "publish", lobby)


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("connect", Resource("Channel", "*", {"anonymous_read": False})),
        ("subscribe", Resource("Channel", "user.5", {"classification": "internal", "history_size": 50})),
        ("edit", Resource("Document", "1", {"owner_id": 1, "editor_ids": [2], "viewer_ids": [3], "roles": ["ops"]})),
        ("view", Resource("Dashboard", "2", {"owner_id": 1, "visibility": "public"})),
        ("administer", Resource("Platform", "webconnect")),
    ],
)
def test_requests_match_the_schema(alice: Any, action: str, resource: Resource) -> None:
    """The hot path skips schema checks of requests; this is where they are checked."""
    from policies import engine

    decision = engine.evaluate(engine.snapshot(), Principal(alice), action, resource, {}, strict=True)
    assert decision.errors == ()
    anonymous = Principal(AnonymousUser(), ConnectionAuth(method="anonymous", scopes=frozenset()))
    assert engine.evaluate(engine.snapshot(), anonymous, action, resource, {}, strict=True).errors == ()


@pytest.mark.django_db
def test_probing_many_resources_cannot_flood_the_audit_log(alice: Any) -> None:
    from webconnect.models import AuditEvent

    for n in range(60):
        assert not authorize(Principal(alice), "subscribe", Resource("Channel", f"ops.probe{n}"))
    assert AuditEvent.objects.filter(action="policy.denied").count() == 20
