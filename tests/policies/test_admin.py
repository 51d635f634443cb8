"""The policy admin: whole-set validation on save, versions and restore, simulator, evaluate API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from policies.models import AccessPolicy, AccessPolicyVersion, PolicyState
from policies.selectors import policy_version

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_policy_tests(no_policy_tests: None) -> None:
    """Several policies here forbid what the shipped policy tests expect (tests/policies/test_policytests.py)."""


ADD_URL = "/admin/policies/accesspolicy/add/"
GOOD = 'forbid(principal, action, resource is Channel)\nwhen { resource.classification == "secret" };'


@pytest.fixture
def staff_client(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def post_policy(
    client: Client, name: str, text: str, url: str = ADD_URL, enabled: bool = True, confirm: bool = True
) -> Any:
    """Post the form; `confirm`: as the impact preview's "Confirm and save" does (no preview)."""
    data = {"name": name, "description": "", "text": text}
    if confirm:
        data["_impact_confirmed"] = "1"
    if enabled:
        data["enabled"] = "on"
    return client.post(url, data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("permit(principal, action resource);", "syntax error: unexpected token"),
        ("permit(principal, action, resource) when { resource.nope == 1 };", "attribute `nope`"),
        ("permit(principal, action, resource) when { resource.name == 1 };", "type"),
        ("permit(principal is Robot, action, resource);", "Robot"),
        ("   ", "This field is required"),
        ('@id("x") permit(principal, action, resource);', "remove the @id annotation"),
        ("permit(principal, action, resource);\npermit(principal, action, resource);", "exactly one"),
    ],
)
def test_an_invalid_policy_is_refused_with_the_reason_and_nothing_is_saved(
    staff_client: Client, text: str, message: str
) -> None:
    before = (AccessPolicy.objects.count(), policy_version())
    response = post_policy(staff_client, "broken", text)
    assert response.status_code == 200  # the form again, with errors
    body = response.content.decode()
    assert message in body
    if message != "This field is required":
        assert "broken: " in body  # the error names the policy
    assert (AccessPolicy.objects.count(), policy_version()) == before


def test_a_duplicate_name_is_refused(staff_client: Client) -> None:
    response = post_policy(staff_client, "signed-in-chat", GOOD)
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


def test_a_disabled_policy_is_still_validated(staff_client: Client) -> None:
    response = post_policy(
        staff_client, "later", "permit(principal, action, resource) when { resource.nope };", enabled=False
    )
    assert response.status_code == 200 and "attribute `nope`" in response.content.decode()


def test_saves_keep_versions_with_diffs_and_a_version_can_be_restored(staff_client: Client, alice: Any) -> None:
    start = policy_version()
    assert post_policy(staff_client, "secret-channels", GOOD).status_code == 302
    policy = AccessPolicy.objects.get(name="secret-channels")
    assert policy.created_by is not None and policy_version() == start + 1
    changed = GOOD.replace('"secret"', '"top-secret"')
    url = f"/admin/policies/accesspolicy/{policy.pk}/change/"
    assert post_policy(staff_client, "secret-channels", changed, url=url).status_code == 302
    versions = list(AccessPolicyVersion.objects.filter(policy_name="secret-channels").order_by("number"))
    assert [v.number for v in versions] == [1, 2]
    assert '-when { resource.classification == "secret" };' in versions[1].diff
    assert '+when { resource.classification == "top-secret" };' in versions[1].diff
    assert versions[1].created_by is not None

    response = staff_client.post(
        "/admin/policies/accesspolicyversion/",
        {"action": "restore", "_selected_action": [versions[0].pk]},
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.text == GOOD
    latest = AccessPolicyVersion.objects.filter(policy_name="secret-channels").order_by("-number").first()
    assert latest is not None and latest.change == "restored" and latest.number == 3
    page = staff_client.get(f"/admin/policies/accesspolicyversion/{latest.pk}/change/")
    assert page.status_code == 200 and "top-secret" in page.content.decode()


def test_deleting_a_policy_keeps_its_history_and_moves_the_version(staff_client: Client) -> None:
    post_policy(staff_client, "temporary", GOOD)
    policy = AccessPolicy.objects.get(name="temporary")
    version = PolicyState.objects.get().version
    response = staff_client.post(f"/admin/policies/accesspolicy/{policy.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not AccessPolicy.objects.filter(name="temporary").exists()
    assert PolicyState.objects.get().version == version + 1
    assert AccessPolicyVersion.objects.filter(policy_name="temporary", change="deleted").exists()


def test_the_simulator_page_shows_the_decision_and_the_policies(staff_client: Client, alice: Any) -> None:
    page = staff_client.get("/admin/policies/accesspolicy/simulator/")
    assert page.status_code == 200
    response = staff_client.post(
        "/admin/policies/accesspolicy/simulator/",
        {"username": "alice", "action": "publish", "resource_type": "Channel", "resource_id": "chat.x"},
    )
    body = response.content.decode()
    assert "ALLOW" in body and "signed-in-chat" in body
    response = staff_client.post(
        "/admin/policies/accesspolicy/simulator/",
        {"username": "nobody", "action": "publish", "resource_type": "Channel", "resource_id": "chat.x"},
    )
    assert "no user named" in response.content.decode()


def test_the_simulator_takes_a_time_and_an_ip(staff_client: Client, alice: Any) -> None:
    post_policy(
        staff_client,
        "office-hours",
        'forbid(principal, action, resource is Channel)\nunless { context.now.toTime() < duration("18h") '
        '&& context.client_ip.isInRange(ip("10.0.0.0/8")) };',
    )
    assert AccessPolicy.objects.filter(name="office-hours").exists()
    base = {"username": "alice", "action": "subscribe", "resource_type": "Channel", "resource_id": "chat.x"}
    inside = staff_client.post(
        "/admin/policies/accesspolicy/simulator/", {**base, "client_ip": "10.0.0.1", "at": "2026-01-05 09:00"}
    )
    assert "ALLOW" in inside.content.decode()
    late = staff_client.post(
        "/admin/policies/accesspolicy/simulator/", {**base, "client_ip": "10.0.0.1", "at": "2026-01-05 22:00"}
    )
    assert "DENY" in late.content.decode() and "office-hours" in late.content.decode()


class TestEvaluateApi:
    URL = "/api/policies/evaluate/"
    BODY = {
        "username": "alice",
        "action": "edit",
        "resource_type": "Document",
        "resource_id": "1",
        "attrs": {"owner_id": None},
    }

    def test_staff_evaluate_requests(self, staff_client: Client, alice: Any) -> None:
        body = {**self.BODY, "attrs": {"owner_id": alice.pk}}
        response = staff_client.post(self.URL, body, content_type="application/json")
        assert response.status_code == 200
        assert response.json()["allowed"] is True and response.json()["policies"] == ["owner-documents"]

    def test_bad_input_gets_a_400(self, staff_client: Client, alice: Any) -> None:
        response = staff_client.post(self.URL, {**self.BODY, "action": "fly"}, content_type="application/json")
        assert response.status_code == 400 and response.json()["code"] == "invalid"
        response = staff_client.post(self.URL, {**self.BODY, "username": "ghost"}, content_type="application/json")
        assert response.status_code == 400 and "ghost" in response.json()["detail"]

    def test_non_staff_and_tokens_without_the_scope_are_refused(
        self, alice: Any, admin_user: Any, mint_token: Callable[..., str]
    ) -> None:
        client = Client()
        client.force_login(alice)
        assert client.post(self.URL, self.BODY, content_type="application/json").status_code == 403
        narrow = mint_token("root", "docs:read")
        response = Client().post(
            self.URL, self.BODY, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {narrow}"
        )
        assert response.status_code == 403
        token = mint_token("root", "policies:admin")
        response = Client().post(
            self.URL, self.BODY, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert response.status_code == 200 and response.json()["allowed"] is False

    def test_a_pasted_token_is_judged_with_its_scopes(
        self, staff_client: Client, alice: Any, mint_token: Callable[..., str]
    ) -> None:
        token = mint_token("alice", "docs:read")
        body = {**self.BODY, "username": "", "token": token, "attrs": {"owner_id": alice.pk}}
        response = staff_client.post(self.URL, body, content_type="application/json")
        assert response.json()["allowed"] is False and "docs:write" in response.json()["reason"]
        response = staff_client.post(self.URL, {**body, "action": "read"}, content_type="application/json")
        assert response.json()["allowed"] is True
