"""The impact of a policy change: the decisions that differ, over the real users and resources."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group

from collab.models import Document
from policies import cedar, impact
from policies.models import AccessPolicy
from webconnect.identity import principal_for_user
from webconnect.models import Namespace

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_policy_tests(no_policy_tests: None) -> None:
    """These changes break the shipped policy tests on purpose (test_policytests.py covers those)."""


OPS_FORBID = 'forbid(principal, action, resource is Channel) when { resource.namespace == "chat" };'


def test_a_forbid_on_chat_loses_each_signed_in_user_the_chat_channels_with_history(make_user: Any) -> None:
    Namespace.objects.get_or_create(name="chat")
    bob, carol = make_user("bob"), make_user("carol")
    current = impact.PolicySet.current()
    proposed = impact.PolicySet((*current.sources, cedar.PolicySource("no-chat", OPS_FORBID)), current.links)
    live = [("chat.lobby", principal_for_user(bob))]

    result = impact.compute_impact(current, proposed, live=live)

    assert result.changed_policies == ["no-chat"]
    assert result.gains == 0 and result.loses > 0
    [group] = [g for g in result.groups if g.resource_kind == "Channel" and g.principal_kind == "User"]
    assert group.change == "loses"
    assert {f'bob (User::"{bob.pk}")', f'carol (User::"{carol.pk}")'} <= group.principals
    assert any(e.resource == 'Channel::"chat.lobby"' and e.action == "subscribe" for e in group.examples)
    assert [vars(c) for c in result.live_ending] == [
        {"principal": f'bob (User::"{bob.pk}")', "action": "subscribe", "resource": 'Channel::"chat.lobby"'}
    ]
    assert not result.sampled
    summary = result.summary()
    assert summary["live_subscriptions_ending"] == 1 and summary["changed_policies"] == ["no-chat"]


def test_a_permit_for_a_group_gains_only_its_members_the_documents(make_user: Any) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    Group.objects.create(name="auditors").user_set.add(bob)
    doc = Document.objects.create(title="Plan", owner=alice)
    text = 'permit(principal in Role::"auditors", action == Action::"read", resource is Document);'
    current = impact.PolicySet.current()
    proposed = impact.PolicySet((*current.sources, cedar.PolicySource("auditors-read", text)), current.links)

    result = impact.compute_impact(current, proposed, live=[])

    assert [(g.change, g.principal_kind, g.resource_kind, g.count) for g in result.groups] == [
        ("gains", "User", "Document", 1)
    ]
    assert [vars(e) for e in result.groups[0].examples] == [
        {"principal": f'bob (User::"{bob.pk}")', "action": "read", "resource": f'Document::"{doc.pk}"'}
    ]
    # Only the requests the new policy's head reaches were evaluated: bob's read of the one document.
    assert result.decisions == 1


def test_an_unchanged_set_changes_nothing(make_user: Any) -> None:
    make_user("bob")
    current = impact.PolicySet.current()
    result = impact.compute_impact(current, current, live=[])
    assert result.empty and result.changed_policies == [] and result.decisions == 0


def test_past_the_budget_it_samples_and_says_so(make_user: Any) -> None:
    Namespace.objects.get_or_create(name="user")
    for n in range(30):
        make_user(f"u{n}")
    policy = AccessPolicy.objects.get(name="personal-channel-owner")
    proposed = impact.proposed_with_edit(name=policy.name, text=policy.text, enabled=False, pk=policy.pk)

    result = impact.compute_impact(impact.PolicySet.current(), proposed, live=[], max_decisions=1000)

    assert result.sampled and result.decisions <= 1000
    assert result.principals < result.principals_total == 31
    assert "sampled:" in result.sampling_note() and f"of {result.principals_total} principals" in result.sampling_note()
    assert result.loses > 0  # the sampled owners lose their own personal channels


# --- The admin: preview, cancel, confirm ---------------------------------------------------------


@pytest.fixture
def staff_client(admin_user: Any) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(admin_user)
    return client


def test_the_admin_shows_the_impact_first_and_saves_only_on_confirmation(staff_client: Any, make_user: Any) -> None:
    from webconnect.models import AuditEvent

    Namespace.objects.get_or_create(name="user")
    bob = make_user("bob")
    policy = AccessPolicy.objects.get(name="personal-channel-owner")
    url = f"/admin/policies/accesspolicy/{policy.pk}/change/"
    form = {"name": policy.name, "description": policy.description, "text": policy.text, "_save": "Save"}

    preview = staff_client.post(url, form)  # "enabled" unticked: disable it

    assert preview.status_code == 200
    body = preview.content.decode()
    assert 'id="impact"' in body and f"bob (User::&quot;{bob.pk}&quot;)" in body
    assert f"Channel::&quot;user.{bob.pk}&quot;" in body and "would end now" in body
    assert AccessPolicy.objects.get(pk=policy.pk).enabled  # nothing saved yet
    assert 'name="_impact_confirmed"' in body and f'href="{url}"' in body  # confirm, or cancel back to the form

    saved = staff_client.post(url, {**form, "_impact_confirmed": "Confirm and save"})

    assert saved.status_code == 302
    assert not AccessPolicy.objects.get(pk=policy.pk).enabled
    event = AuditEvent.objects.get(action="policy.change_confirmed")
    assert event.target == "AccessPolicy::personal-channel-owner" and event.details["confirmed"] is True
    assert event.details["changed_policies"] == ["personal-channel-owner"] and event.details["loses"] > 0
    assert any(e["principal"] == f'bob (User::"{bob.pk}")' for e in event.details["examples"])


def test_an_edit_that_changes_no_decision_saves_at_once(staff_client: Any) -> None:
    text = 'forbid(principal in Role::"nobody", action, resource is Channel);'
    response = staff_client.post(
        "/admin/policies/accesspolicy/add/", {"name": "nobody-channels", "text": text, "enabled": "on"}
    )
    assert response.status_code == 302 and AccessPolicy.objects.filter(name="nobody-channels").exists()


# --- POST /api/policies/impact/ ------------------------------------------------------------


def test_the_api_answers_the_changes_of_a_proposed_file_and_saves_nothing(
    admin_user: Any, make_user: Any, mint_token: Any
) -> None:
    import yaml
    from django.test import Client

    from policies.selectors import policy_version
    from policies.services import policies_export

    Namespace.objects.get_or_create(name="user")
    bob = make_user("bob")
    exported = policies_export()
    for row in exported["access_policies"]:
        if row["name"] == "personal-channel-owner":
            row["enabled"] = False
    token = mint_token(admin_user.get_username(), "policies:admin")
    before = policy_version()

    for body, content_type in (
        (json.dumps(exported), "application/json"),
        (yaml.safe_dump(exported), "application/yaml"),
    ):
        response = Client().post(
            "/api/policies/impact/", body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert response.status_code == 200, response.content
        data = response.json()
        assert data["changed_policies"] == ["personal-channel-owner"] and data["loses"] > 0
        examples = [e for group in data["groups"] for e in group["examples"]]
        assert {
            "principal": f'bob (User::"{bob.pk}")',
            "action": "subscribe",
            "resource": f'Channel::"user.{bob.pk}"',
        } in examples
        assert data["evaluated"]["sampled"] is False
    assert policy_version() == before and AccessPolicy.objects.get(name="personal-channel-owner").enabled


def test_the_api_refuses_a_bad_file_and_a_token_without_the_scope(admin_user: Any, mint_token: Any) -> None:
    from django.test import Client

    token = mint_token(admin_user.get_username(), "policies:admin")
    bad = {
        "format": "webconnect-policies",
        "access_policies": [{"name": "x", "text": "permit(principal, action resource);"}],
    }
    response = Client().post(
        "/api/policies/impact/", json.dumps(bad), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 400 and any("x: syntax error" in e for e in response.json()["errors"])
    narrow = mint_token(admin_user.get_username(), "docs:read")
    response = Client().post(
        "/api/policies/impact/", json.dumps(bad), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {narrow}"
    )
    assert response.status_code == 403


def test_an_import_that_changes_decisions_is_previewed_then_confirmed(staff_client: Any, make_user: Any) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from policies.services import policies_export
    from webconnect.models import AuditEvent

    Namespace.objects.get_or_create(name="user")
    bob = make_user("bob")
    exported = policies_export()
    exported["access_policies"] = [r for r in exported["access_policies"] if r["name"] != "personal-channel-owner"]
    upload = SimpleUploadedFile("policies.json", json.dumps(exported).encode())

    preview = staff_client.post("/admin/policies/accesspolicy/import/", {"file": upload})

    body = preview.content.decode()
    assert preview.status_code == 200 and 'id="impact"' in body and f"Channel::&quot;user.{bob.pk}&quot;" in body
    assert AccessPolicy.objects.filter(name="personal-channel-owner").exists()  # nothing imported yet

    done = staff_client.post(
        "/admin/policies/accesspolicy/import/", {"content": json.dumps(exported), "_impact_confirmed": "1"}
    )
    assert done.status_code == 302 and not AccessPolicy.objects.filter(name="personal-channel-owner").exists()
    event = AuditEvent.objects.get(action="policy.import_confirmed")
    assert event.details["changed_policies"] == ["personal-channel-owner"] and event.details["loses"] > 0
