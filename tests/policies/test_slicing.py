"""The hot path decides on a slice of the set and on request parts kept per version:
it must answer exactly what the whole set answers (allowed, deciding policies, errors)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.test import override_settings

from policies import cedar, engine
from policies.models import AccessPolicy
from policies.services import access_policy_save, share_grant
from webconnect.authorization import authorize
from webconnect.identity import ConnectionAuth, Principal, Resource


@dataclass
class FakeUser:
    pk: int
    username: str
    is_staff: bool = False
    is_authenticated: bool = True

    def get_username(self) -> str:
        return self.username


# Shapes the index reads (and some it must leave alone), several unvalidated on purpose:
# a policy that errors must still error in its slice.
SHAPES = [
    'permit(principal, action == Action::"publish", resource is Channel) when { resource.namespace == "chat" };',
    "forbid(principal, action, resource is Channel)"
    ' when { resource.name == "team1.secret" && context.auth_method == "x" };',
    'forbid(principal, action, resource) when { "team2.secret" == resource.name };',  # errors on non-Channels
    'permit(principal, action, resource) when { principal.username == "bob" && resource.name == "chat.bob" };',
    'permit(principal, action in [Action::"read", Action::"edit"], resource == Document::"3");',
    'permit(principal, action, resource in Dashboard::"4") unless { resource.name == "x" };',
    'permit(principal is User, action, resource is Channel in Channel::"ops.room");',
    'forbid(principal, action, resource is Channel in Document::"3");',  # never applies
    'permit(principal in Role::"ops", action == Action::"subscribe", resource is Channel)'
    ' when { (resource.name == "ops.a" || resource.name == "ops.b") };',
    'permit(principal, action == Action::"view", resource) when { resource has visibility && true };',
    'permit(principal, action == Action::"connect", resource) when { context.client_ip.isInRange(ip("10.0.0.0/8")) };',
]
TEMPLATE = 'permit(principal == ?principal, action in [Action::"read", Action::"edit"], resource in ?resource);'
LINKS = [
    cedar.Link("share:1", "tpl", ("User", "1"), ("Document", "3")),
    cedar.Link("share:2", "tpl", ("Role", "ops"), ("Document", "5")),
    cedar.Link("share:3", "tpl", ("User", "2"), ("Dashboard", "4")),
]
RESOURCES = [
    ("Channel", "chat.lobby", {}),
    ("Channel", "team1.secret", {}),
    ("Channel", "team2.secret", {}),
    ("Channel", "chat.bob", {}),
    ("Channel", "ops.room", {}),
    ("Channel", "ops.a", {}),
    ("Channel", "user.1", {}),
    ("Document", "3", {"owner_id": 2}),
    ("Document", "5", {"roles": ["ops"]}),
    ("Document", "9", {}),
    ("Dashboard", "4", {"visibility": "shared"}),
    ("Platform", "webconnect", {}),
]
PRINCIPALS: list[tuple[Any, tuple[str, ...]]] = [
    (FakeUser(1, "alice"), ()),
    (FakeUser(2, "bob", is_staff=True), ("ops",)),
    (None, ()),
]


def test_every_slice_decides_as_the_whole_set() -> None:
    sources = [cedar.PolicySource(f"shape-{n}", text) for n, text in enumerate(SHAPES)]
    sources.append(cedar.PolicySource("tpl", TEMPLATE))
    whole = cedar.build_policy_set(sources, LINKS)
    index = cedar.build_index(sources, LINKS)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    compared = evaluated = 0
    for (user, roles), action, (type_, id_, attrs), ip in itertools.product(
        PRINCIPALS, cedar.ACTIONS, RESOURCES, ("10.1.2.3", "192.0.2.1")
    ):
        request = cedar.build_request(
            user=user,
            roles=roles,
            action=action,
            resource_type=type_,
            resource_id=id_,
            resource_attrs=attrs,
            client_ip=ip,
            token_scopes=(),
            auth_method="session" if user else "anonymous",
            now=now,
        )
        expected = cedar.evaluate(whole, request, ids=cedar.positional_ids([source.name for source in sources]))
        parsed = index.slice_for(*index.slice_key(type_, id_))
        got = cedar.NO_POLICY if parsed is None else cedar.evaluate(parsed.policy_set, request, ids=parsed.ids)
        assert got == expected, (user, action, type_, id_)
        compared += 1
        evaluated += len(parsed.ids) if parsed is not None else 0
    # The slices do cut: on average Cedar sees well under half of the set.
    assert compared == len(PRINCIPALS) * len(cedar.ACTIONS) * len(RESOURCES) * 2
    assert evaluated < compared * len(sources) / 2


def test_an_evaluation_error_names_the_policy_not_cedars_position() -> None:
    sources = [cedar.PolicySource(f"shape-{n}", text) for n, text in enumerate(SHAPES)]
    index = cedar.build_index(sources)
    parsed = index.slice_for(*index.slice_key("Document", "9"))
    assert parsed is not None
    request = cedar.build_request(
        user=None,
        roles=(),
        action="read",
        resource_type="Document",
        resource_id="9",
        resource_attrs={},
        client_ip=None,
        token_scopes=(),
        auth_method="anonymous",
        now=datetime.now(UTC),
    )
    outcome = cedar.evaluate(parsed.policy_set, request, ids=parsed.ids)
    assert not outcome.allowed
    assert any("policy `shape-2`" in error for error in outcome.errors), outcome.errors


def test_the_index_reads_scopes_and_leading_name_tests() -> None:
    sources = [cedar.PolicySource(f"shape-{n}", text) for n, text in enumerate(SHAPES)]
    sources.append(cedar.PolicySource("tpl", TEMPLATE))
    index = cedar.build_index(sources, LINKS)
    scopes = [policy.scope for policy in index.statics]
    assert scopes[0] == cedar.Scope(frozenset({"Channel"}))
    assert scopes[1].channel_name == "team1.secret" and scopes[2].channel_name == "team2.secret"
    assert scopes[3].channel_name is None  # not the leading test: Cedar evaluates the username first
    assert scopes[4].resource_uid == ("Document", "3")
    assert scopes[5] == cedar.Scope(frozenset({"Dashboard"}), ("Dashboard", "4"))  # an unless is not read
    assert scopes[7].resource_types == frozenset()
    assert scopes[8].channel_name is None
    assert [scope.resource_uid for _link, scope in index.links] == [
        ("Document", "3"),
        ("Document", "5"),
        ("Dashboard", "4"),
    ]
    assert index.slice_key("Channel", "team1.secret") == ("Channel", "team1.secret")
    assert index.slice_key("Channel", "chat.other") == ("Channel", None)
    # Context attributes some policy reads: the others need not be sent.
    assert index.context_keys == frozenset({"auth_method", "client_ip"})
    wholesale = cedar.build_index(
        [cedar.PolicySource("c", "permit(principal, action, resource) when { context == {} };")]
    )
    assert wholesale.context_keys is None


@pytest.mark.django_db
@override_settings(POLICY_DECISION_CACHE_SECONDS=0)
def test_the_hot_path_agrees_with_the_whole_set(alice: Any, bob: Any) -> None:
    """Every action on every platform resource shape, on the default set plus shares: the sliced
    hot path (kept request parts, pruned context) answers what the whole set answers."""
    ops = Group.objects.create(name="ops")
    bob.groups.add(ops)
    access_policy_save(
        policy=AccessPolicy(
            name="night-forbid",
            text='forbid(principal, action == Action::"publish", resource is Channel) '
            'when { resource.name == "chat.night" && context.now > datetime("2026-01-01T00:00:00Z") };',
        ),
        actor=None,
    )
    share_grant(resource_type="Document", resource_id=3, role="editor", user=alice)
    share_grant(resource_type="Document", resource_id=4, role="viewer", group=ops)
    principals = [
        Principal(alice, ConnectionAuth(method="session", client_ip="10.1.2.3")),
        Principal(bob, ConnectionAuth(method="bearer", scopes=frozenset({"docs:read"}), client_ip="192.0.2.1")),
        Principal(AnonymousUser(), ConnectionAuth(method="anonymous", scopes=frozenset())),
    ]
    resources = [
        Resource("Channel", "chat.lobby", {"namespace": "chat"}),
        Resource("Channel", "chat.night", {"namespace": "chat"}),
        Resource("Channel", f"user.{alice.pk}", {"classification": "internal"}),
        Resource("Channel", "news.today", {"anonymous_read": True}),
        Resource("Document", "3", {"owner_id": bob.pk, "editor_ids": [], "viewer_ids": []}),
        Resource("Document", "4", {"owner_id": alice.pk, "editor_ids": [bob.pk], "roles": ["ops"]}),
        Resource("Dashboard", "2", {"owner_id": alice.pk, "visibility": "public"}),
        Resource("Platform", "webconnect"),
    ]
    snap = engine.snapshot()
    for principal, action, resource in itertools.product(principals, cedar.ACTIONS, resources):
        # The reference: the whole set and a request built from scratch (what the hot path did before).
        request = cedar.build_request(
            user=principal.user,
            roles=engine._user_roles(principal.user, snap.version),
            action=action,
            resource_type=resource.type,
            resource_id=resource.id,
            resource_attrs=resource.attrs,
            client_ip=principal.auth.client_ip,
            token_scopes=engine._scopes(principal),
            auth_method=principal.auth.method,
            now=datetime.now(UTC),
        )
        expected = cedar.evaluate(snap.policy_set, request, ids=snap.whole.ids)
        for _twice in range(2):  # the second time from the kept request parts
            fast = engine.evaluate(snap, principal, action, resource, {}, audit=False)
            got = cedar.Outcome(fast.allowed, fast.policies, fast.errors)
            assert got == expected, (principal.user, action, resource)


@pytest.mark.django_db
@override_settings(POLICY_DECISION_CACHE_SECONDS=0)
def test_a_renamed_or_promoted_user_is_decided_afresh(alice: Any) -> None:
    """Username and staff flag change without a new policy version: the kept principal follows them."""
    access_policy_save(
        policy=AccessPolicy(
            name="carol-chat",
            text='permit(principal is User, action == Action::"subscribe", resource is Channel) '
            'when { principal.username == "carol" || principal.is_staff };',
        ),
        actor=None,
    )
    ops = Resource("Channel", "ops.room")
    assert not authorize(Principal(alice), "subscribe", ops)
    alice.username = "carol"
    alice.save()
    assert authorize(Principal(alice), "subscribe", ops)
    alice.username = "alice"
    alice.is_staff = True
    alice.save()
    assert authorize(Principal(alice), "subscribe", ops)


@pytest.mark.django_db
def test_decide_many_answers_as_decide_one_by_one(alice: Any, bob: Any) -> None:
    share_grant(resource_type="Document", resource_id=3, role="editor", user=alice)
    principal = Principal(alice, ConnectionAuth(method="session", client_ip="10.1.2.3"))
    requests = [
        ("publish", Resource("Channel", "chat.lobby", {"namespace": "chat"})),
        ("subscribe", Resource("Channel", "ops.secrets")),  # no policy applies
        ("edit", Resource("Document", "3", {"owner_id": bob.pk})),
        ("read", Resource("Document", "3", {"owner_id": bob.pk})),
        ("edit", Resource("Document", "3", {"owner_id": alice.pk})),  # the same uid, other attrs
        ("share", Resource("Document", "8", {"owner_id": alice.pk})),
        ("subscribe", Resource("Channel", f"user.{alice.pk}")),
    ]
    engine.decide(principal, "publish", requests[0][1], {})  # one answer already cached
    together = engine.decide_many(principal, requests)
    engine.clear_caches()
    one_by_one = [engine.decide(principal, action, resource, {}) for action, resource in requests]
    assert [(d.allowed, d.policies, d.errors) for d in together] == [
        (d.allowed, d.policies, d.errors) for d in one_by_one
    ]
    assert [d.allowed for d in together] == [True, False, True, True, True, True, True]
