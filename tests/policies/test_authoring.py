"""Writing Cedar for named users: `username` and `groups` on User, a hint when a policy forgets that
a principal can be Anonymous, principals by name in the admin form, and a simulator that takes
usernames wherever it asks for a user id."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Group
from django.core.exceptions import ValidationError
from django.test import Client

from policies import authoring, cedar
from policies.models import AccessPolicy
from policies.services import access_policy_save
from policies.simulator import principal_for, simulate
from webconnect.authorization import Principal, Resource, authorize
from webconnect.handshake import ConnectionAuth

pytestmark = pytest.mark.django_db

HINT = "test `principal is User` first"
ANONYMOUS = Principal(AnonymousUser(), ConnectionAuth(method="anonymous", scopes=frozenset()))


def add_policy(name: str, text: str) -> AccessPolicy:
    return access_policy_save(policy=AccessPolicy(name=name, text=text), actor=None)


@pytest.fixture
def staff_client(client: Client, admin_user: Any) -> Client:
    client.force_login(admin_user)
    return client


# --- The schema: username and groups on User, nothing on Anonymous ------------------------------


def test_a_policy_on_the_username_decides_for_that_user_only(alice: Any, bob: Any) -> None:
    add_policy(
        "bob-reads-ops",
        'permit(principal, action == Action::"subscribe", resource is Channel)\n'
        'when { principal is User && principal.username == "bob" && resource.namespace == "ops" };',
    )
    ops = Resource("Channel", "ops.alerts")
    assert authorize(Principal(bob), "subscribe", ops).policies == ("bob-reads-ops",)
    assert not authorize(Principal(alice), "subscribe", ops)
    anonymous = authorize(ANONYMOUS, "subscribe", ops)
    assert not anonymous and anonymous.errors == ()  # `is User` keeps Anonymous out without an error


def test_a_policy_on_groups_agrees_with_role_membership(alice: Any, bob: Any) -> None:
    ops = Group.objects.create(name="ops")
    alice.groups.add(ops)
    add_policy(
        "ops-group-publishes",
        'permit(principal, action == Action::"publish", resource is Channel)\n'
        'when { principal is User && principal.groups.contains("ops") && resource.namespace == "ops" };',
    )
    add_policy(
        "ops-role-subscribes",
        'permit(principal in Role::"ops", action == Action::"subscribe", resource is Channel)\n'
        'when { resource.namespace == "ops" };',
    )
    channel = Resource("Channel", "ops.deploys")
    assert authorize(Principal(alice), "publish", channel).policies == ("ops-group-publishes",)
    assert authorize(Principal(alice), "subscribe", channel).policies == ("ops-role-subscribes",)
    assert not authorize(Principal(bob), "publish", channel)
    alice.groups.remove(ops)  # membership moves the policy version: the set attribute follows
    assert not authorize(Principal(alice), "publish", channel)


def test_user_entities_carry_username_and_groups_and_anonymous_nothing(alice: Any) -> None:
    alice.groups.add(Group.objects.create(name="writers"), Group.objects.create(name="editors"))
    _uid, [entity] = cedar.principal_entity(alice, ["writers", "editors"])
    assert entity["attrs"] == {"username": "alice", "is_staff": False, "groups": ["editors", "writers"]}
    assert {parent["id"] for parent in entity["parents"]} == {"editors", "writers"}
    _uid, [nobody] = cedar.principal_entity(None, [])
    assert nobody["attrs"] == {}
    assert "groups: Set<String>" in cedar.schema_text() and cedar.SCHEMA_VERSION == 2


# --- The hint -----------------------------------------------------------------------------------


def test_reading_username_without_testing_is_user_is_refused_with_the_hint() -> None:
    with pytest.raises(ValidationError) as caught:
        add_policy(
            "forgot-is-user",
            'permit(principal, action == Action::"read", resource) when { principal.username == "bob" };',
        )
    message = " ".join(caught.value.messages)
    assert "attribute `username` on entity type `Anonymous` not found" in message
    assert HINT in message
    assert not AccessPolicy.objects.filter(name="forgot-is-user").exists()


def test_an_unrelated_error_gets_no_hint() -> None:
    errors = cedar.check_policies(
        [cedar.PolicySource("typo", 'permit(principal, action, resource is Channel) when { resource.nmae == "x" };')]
    )
    assert errors and all(HINT not in str(error) for error in errors)


def test_an_evaluation_error_on_anonymous_gets_the_hint_too() -> None:
    from datetime import UTC, datetime

    # Saved policies are validated, so this can only come from an unvalidated set; the wording is Cedar's own.
    policy_set = cedar.build_policy_set(
        [cedar.PolicySource("raw", 'permit(principal, action, resource) when { principal.username == "bob" };')]
    )
    request = cedar.build_request(
        user=None,
        roles=(),
        action="read",
        resource_type="Document",
        resource_id="1",
        resource_attrs={},
        client_ip=None,
        token_scopes=(),
        auth_method="anonymous",
        now=datetime.now(UTC),
    )
    outcome = cedar.evaluate(policy_set, request)
    assert not outcome.allowed and len(outcome.errors) == 1
    assert "does not have the attribute `username`" in outcome.errors[0] and HINT in outcome.errors[0]


def test_the_admin_form_shows_the_hint_beside_the_text(staff_client: Client) -> None:
    text = 'permit(principal, action == Action::"read", resource) when { principal.groups.contains("ops") };'
    response = staff_client.post(
        "/admin/policies/accesspolicy/add/", {"name": "ops-read", "description": "", "enabled": "on", "text": text}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "attribute `groups` on entity type `Anonymous` not found" in page
    assert "test `principal is User` first" in page
    assert not AccessPolicy.objects.filter(name="ops-read").exists()


# --- Principals by name in the form ------------------------------------------------------------


def test_the_picker_finds_users_by_name_and_groups_and_inserts_ids_with_the_username(
    staff_client: Client, make_user: Any
) -> None:
    bob = make_user("bob")
    bobby = make_user("bobby")
    make_user("rob")
    bob.first_name, bob.last_name = "Bob", "Builder"
    bob.save()
    Group.objects.create(name="bob-fans")
    results = staff_client.get("/admin/policies/accesspolicy/principals/", {"q": "bob"}).json()["results"]
    assert [(r["type"], r["id"]) for r in results] == [
        ("User", str(bob.pk)),
        ("User", str(bobby.pk)),
        ("Role", "bob-fans"),
    ]
    assert results[0]["insert"] == f'User::"{bob.pk}" // bob\n'
    assert results[0]["label"] == f'bob — Bob Builder (User::"{bob.pk}")'
    assert results[2]["insert"] == 'Role::"bob-fans"'
    by_id = staff_client.get("/admin/policies/accesspolicy/principals/", {"q": str(bobby.pk)}).json()["results"]
    assert by_id[0]["id"] == str(bobby.pk)
    assert staff_client.get("/admin/policies/accesspolicy/principals/", {"q": ""}).json() == {"results": []}


def test_what_the_picker_inserts_is_valid_cedar_in_the_middle_of_a_line(make_user: Any) -> None:
    odd = make_user("o'neil.smith+x@example")
    text = f"permit(principal == {authoring.user_entity(odd)}, action, resource);"
    assert cedar.check_policies([cedar.PolicySource("one-user", text)]) == []
    quoted = Group.objects.create(name='say "hi"')
    role_text = f'permit(principal in {authoring.role_entity(quoted)}, action == Action::"read", resource);'
    assert cedar.check_policies([cedar.PolicySource("one-role", role_text)]) == []


def test_the_picker_is_for_staff_only(client: Client, alice: Any) -> None:
    client.force_login(alice)
    response = client.get("/admin/policies/accesspolicy/principals/", {"q": "a"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_change_form_names_the_principals_a_policy_mentions(staff_client: Client, bob: Any) -> None:
    Group.objects.create(name="ops")
    policy = add_policy(
        "bob-and-ops",
        f'permit(principal == User::"{bob.pk}", action == Action::"read", resource);',
    )
    page = staff_client.get(f"/admin/policies/accesspolicy/{policy.pk}/change/").content.decode()
    assert f"<code>User::&quot;{bob.pk}&quot;</code> is bob" in page
    assert 'class="principal-search"' in page  # the picker is on the form
    named = authoring.principals_named('permit(principal in Role::"ops", action, resource) when { User::"999999" };')
    assert named == [('User::"999999"', "no such user"), ('Role::"ops"', "group")]


# --- The simulator takes usernames --------------------------------------------------------------


def test_the_simulator_takes_usernames_in_attrs_and_personal_channels(alice: Any, bob: Any) -> None:
    as_alice = principal_for(username="alice")
    owned = simulate(
        principal=as_alice, action="edit", resource_type="Document", resource_id="7", attrs={"owner_id": "alice"}
    )
    assert owned.decision.allowed and owned.decision.policies == ("owner-documents",)
    as_bob = principal_for(username="bob")
    shared = simulate(
        principal=as_bob,
        action="read",
        resource_type="Document",
        resource_id="7",
        attrs={"owner_id": "alice", "viewer_ids": ["bob"]},
    )
    assert shared.decision.allowed
    assert not simulate(
        principal=as_bob, action="edit", resource_type="Document", resource_id="7", attrs={"owner_id": "alice"}
    ).decision.allowed
    # bob's personal channel, named by username: he may read it, alice may not.
    personal = simulate(principal=as_bob, action="subscribe", resource_type="Channel", resource_id="user.bob")
    assert personal.decision.allowed and personal.resource == f'Channel::"user.{bob.pk}"'
    assert not simulate(
        principal=as_alice, action="subscribe", resource_type="Channel", resource_id="user.bob"
    ).decision.allowed


def test_the_simulator_takes_a_user_as_cedar_names_it(bob: Any) -> None:
    for name in (f'User::"{bob.pk}"', str(bob.pk), "bob"):
        principal = principal_for(username=name)
        assert principal.user == bob
    result = simulate(
        principal=principal_for(username=f'User::"{bob.pk}"'),
        action="connect",
        resource_type="Platform",
        resource_id="webconnect",
    )
    assert result.principal == f'bob (User::"{bob.pk}")'


def test_an_unknown_username_in_attrs_is_said_plainly(alice: Any) -> None:
    result = simulate(
        principal=principal_for(username="alice"),
        action="read",
        resource_type="Document",
        resource_id="7",
        attrs={"editor_ids": ["zed"]},
    )
    assert not result.decision.allowed and result.decision.reason == "no user named 'zed' (in editor_ids)"


def test_the_admin_simulator_by_username(staff_client: Client, alice: Any, bob: Any) -> None:
    form = {
        "username": "bob",
        "action": "read",
        "resource_type": "Document",
        "resource_id": "12",
        "attrs": json.dumps({"owner_id": "alice", "viewer_ids": ["bob"]}),
        "_evaluate": "Evaluate",
    }
    page = staff_client.post("/admin/policies/accesspolicy/simulator/", form).content.decode()
    assert '<span id="decision">ALLOW</span>' in page and f"bob (User::&quot;{bob.pk}&quot;)" in page
    form["attrs"] = json.dumps({"owner_id": "nobody-here"})
    page = staff_client.post("/admin/policies/accesspolicy/simulator/", form).content.decode()
    assert "no user named &#x27;nobody-here&#x27; (owner_id)" in page and 'id="decision"' not in page


def test_the_evaluate_api_takes_usernames(client: Client, admin_user: Any, alice: Any) -> None:
    client.force_login(admin_user)
    response = client.post(
        "/api/policies/evaluate/",
        {
            "username": "alice",
            "action": "delete",
            "resource_type": "Document",
            "resource_id": "3",
            "attrs": {"owner_id": "alice"},
        },
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["allowed"] is True
