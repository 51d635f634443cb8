"""Groups from an identity provider in the policies: the shipped group rule and the simulator's "as a member of"."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from policies.models import AccessPolicy

pytestmark = pytest.mark.django_db

URL = "/api/policies/evaluate/"
SUBSCRIBE_ENG = {"action": "subscribe", "resource_type": "Channel", "resource_id": "eng.builds", "attrs": {}}


@pytest.fixture
def staff_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def group_rule_on() -> None:
    AccessPolicy.objects.filter(name="group-engineering-channels").update(enabled=True)


def evaluate(client: Client, **body: Any) -> dict[str, Any]:
    response = client.post(URL, {**SUBSCRIBE_ENG, **body}, content_type="application/json")
    assert response.status_code == 200, response.content
    return dict(response.json())


def test_the_default_set_ships_a_group_rule_turned_off(staff_client: Client) -> None:
    rule = AccessPolicy.objects.get(name="group-engineering-channels")
    assert not rule.enabled and 'principal in Role::"engineering"' in rule.text
    assert evaluate(staff_client, groups=["engineering"])["allowed"] is False  # off: default deny


def test_the_simulator_evaluates_someone_by_group(staff_client: Client, group_rule_on: None) -> None:
    member = evaluate(staff_client, groups=["engineering"])
    assert member["allowed"] is True and member["policies"] == ["group-engineering-channels"]
    assert "groups: engineering" in member["principal"]
    assert evaluate(staff_client, groups=["sales"])["allowed"] is False


def test_the_simulator_evaluates_a_user_as_if_in_other_groups(
    staff_client: Client, alice: Any, group_rule_on: None
) -> None:
    assert evaluate(staff_client, username="alice")["allowed"] is False  # alice has no group
    what_if = evaluate(staff_client, username="alice", groups=["engineering"])
    assert what_if["allowed"] is True and what_if["principal"].startswith("alice")
    assert not alice.groups.exists()  # nothing was saved
    alice.groups.add(Group.objects.create(name="engineering"))
    assert evaluate(staff_client, username="alice")["allowed"] is True
    assert evaluate(staff_client, username="alice", groups=[])["allowed"] is False


def test_groups_with_a_token_is_a_clear_error(staff_client: Client, alice: Any, mint_token: Any) -> None:
    token = mint_token("alice", "realtime:read")
    response = staff_client.post(
        URL, {**SUBSCRIBE_ENG, "token": token, "groups": ["x"]}, content_type="application/json"
    )
    assert response.status_code == 400 and "not for a token" in response.json()["detail"]
