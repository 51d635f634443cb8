"""Policy test cases: shipped for the default set, run on every save and import, `manage.py testpolicies`."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.test import Client

from policies.models import AccessPolicy, PolicyTestCase
from policies.services import access_policy_save, policies_export, policies_import

pytestmark = pytest.mark.django_db

NO_CHAT = 'forbid(principal, action, resource is Channel) when { resource.namespace == "chat" };'


def test_a_fresh_install_ships_cases_and_they_pass() -> None:
    out = StringIO()
    call_command("testpolicies", stdout=out)
    assert PolicyTestCase.objects.count() >= 9
    assert f"{PolicyTestCase.objects.count()} policy tests passed" in out.getvalue()
    assert "ok    signed-in-users-read-chat" in out.getvalue()


def test_a_failing_case_fails_the_command_with_its_message() -> None:
    PolicyTestCase.objects.create(
        name="bob-administers",
        principal='User::"77"',
        action="administer",
        resource_type="Platform",
        resource_id="webconnect",
        expected="allow",
        note="bob runs the platform",
    )
    err = StringIO()
    with pytest.raises(CommandError, match="1 of 10 policy tests failed"):
        call_command("testpolicies", stdout=StringIO(), stderr=err)
    assert "policy test bob-administers failed" in err.getvalue() and "bob runs the platform" in err.getvalue()
    assert "determining policies: none (no policy applied)" in err.getvalue()


def test_a_save_that_breaks_a_case_is_refused_with_the_case_and_the_determining_policy() -> None:
    with pytest.raises(ValidationError) as refused:
        access_policy_save(policy=AccessPolicy(name="no-chat", text=NO_CHAT), actor=None)
    [message] = refused.value.message_dict["text"]
    assert message.startswith("policy test signed-in-users-read-chat failed:")
    assert 'User::"case-alice" subscribe Channel::"chat.lobby" expected allow, got deny' in message
    assert "(determining policies: no-chat)" in message and "Everyone signed in may use chat.*" in message
    assert not AccessPolicy.objects.filter(name="no-chat").exists()


def test_the_admin_form_shows_the_failing_case_beside_the_text(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    response = client.post("/admin/policies/accesspolicy/add/", {"name": "no-chat", "text": NO_CHAT, "enabled": "on"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "policy test signed-in-users-read-chat failed" in body and "determining policies: no-chat" in body
    assert not AccessPolicy.objects.filter(name="no-chat").exists()


def test_a_case_with_context_and_groups_of_a_user_that_does_not_exist() -> None:
    office = (
        'forbid(principal in Role::"contractors", action, resource is Channel) '
        'unless { context.client_ip.isInRange(ip("10.0.0.0/8")) };'
    )
    access_policy_save(policy=AccessPolicy(name="contractors-office", text=office), actor=None)
    case = PolicyTestCase.objects.create(
        name="contractors-outside",
        principal='User::"900"',
        groups=["contractors"],
        action="subscribe",
        resource_type="Channel",
        resource_id="chat.lobby",
        context={"client_ip": "203.0.113.5"},
        expected="deny",
    )
    out = StringIO()
    call_command("testpolicies", stdout=out)
    assert "ok    contractors-outside" in out.getvalue()
    case.context = {"client_ip": "10.1.2.3"}
    case.save()
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("testpolicies", stdout=out, stderr=out)
    assert "contractors-outside failed" in out.getvalue() and "determining policies: signed-in-chat" in out.getvalue()


def test_export_and_import_carry_the_cases_and_an_import_breaking_one_is_refused() -> None:
    exported = policies_export()
    assert {case["name"] for case in exported["test_cases"]} >= {"signed-in-users-read-chat"}
    exported["access_policies"].append({"name": "no-chat", "text": NO_CHAT, "enabled": True, "description": ""})
    with pytest.raises(ValidationError) as refused:
        policies_import(content=json.dumps(exported), actor=None)
    assert any("policy test signed-in-users-read-chat failed" in m for m in refused.value.messages)

    # Without that case in the file, the import goes through and the file's cases replace the stored ones.
    exported["test_cases"] = [c for c in exported["test_cases"] if c["name"] != "signed-in-users-read-chat"]
    exported["test_cases"].append(
        {"name": "chat-is-closed", "principal": 'User::"5"', "action": "publish", "resource_type": "Channel",
         "resource_id": "chat.x", "expected": "deny", "note": "chat is closed"}
    )  # fmt: skip
    policies_import(content=json.dumps(exported), actor=None)
    names = set(PolicyTestCase.objects.values_list("name", flat=True))
    assert "chat-is-closed" in names and "signed-in-users-read-chat" not in names
    assert AccessPolicy.objects.filter(name="no-chat").exists()


def test_the_admin_lists_cases_with_their_result(admin_user: Any) -> None:
    client = Client()
    client.force_login(admin_user)
    body = client.get("/admin/policies/policytestcase/").content.decode()
    assert "signed-in-users-read-chat" in body and "passes" in body and "fails" not in body


def test_the_impact_api_refuses_a_file_that_breaks_a_case(admin_user: Any) -> None:
    exported = policies_export()
    exported["access_policies"].append({"name": "no-chat", "text": NO_CHAT, "enabled": True, "description": ""})
    client = Client()
    client.force_login(admin_user)
    response = client.post("/api/policies/impact/", json.dumps(exported), content_type="application/json")
    assert response.status_code == 400
    assert any("policy test signed-in-users-read-chat failed" in e for e in response.json()["errors"])
