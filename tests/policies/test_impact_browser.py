"""An administrator edits a policy, reads what it would do, cancels, then confirms: the user's live
subscription ends and the audit event carries the impact summary."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from policies.models import AccessPolicy
from tests.conftest import PASSWORD, LiveServer
from tests.policies.test_invalidation import _install_namespaces, _subscribed, _wait_for_error
from webconnect.models import AuditEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page: Any, server: LiveServer, next_path: str) -> None:
    page.goto(f"{server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", "chief")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


def test_the_impact_preview_names_who_loses_a_channel_cancel_changes_nothing_confirm_ends_it(
    page: Any,
    live_server_factory: Callable[..., LiveServer],
    make_user: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    # Its own server: a shared one may cache content type ids of a database flushed since (admin's LogEntry).
    live_daphne = live_server_factory()
    _install_namespaces()
    make_user("chief", superuser=True)
    carla = make_user("carla")
    policy = AccessPolicy.objects.get(name="signed-in-chat")
    original = policy.text
    edited = original.replace(
        'resource.namespace == "chat"', f'resource.namespace == "chat" && principal != User::"{carla.pk}"'
    )
    assert edited != original
    change_path = f"/admin/policies/accesspolicy/{policy.pk}/change/"

    with _subscribed(live_daphne.ws_url, mint_token("carla", "realtime:read realtime:write"), "chat.lobby") as ws:
        sign_in(page, live_daphne, change_path)
        page.fill("#id_text", edited)
        page.click("input[name=_save]")

        page.wait_for_selector("#impact")
        page.screenshot(path="test-artifacts/policy-impact-preview.png", full_page=True)
        preview = page.text_content("#impact") or ""
        assert f'carla (User::"{carla.pk}")' in preview and 'Channel::"chat.lobby"' in preview
        assert "User loses" in preview
        assert (page.text_content("#impact-live") or "").startswith("1 live subscription would end now")

        page.click("#impact-cancel")
        page.wait_for_url(f"**{change_path}")
        assert AccessPolicy.objects.get(pk=policy.pk).text == original  # nothing changed
        with pytest.raises(AssertionError):
            _wait_for_error(ws, within=1.5)  # and the subscription is still there

        page.fill("#id_text", edited)
        page.click("input[name=_save]")
        page.wait_for_selector("#impact-confirm")
        page.click("#impact-confirm")
        page.wait_for_url("**/admin/policies/accesspolicy/")
        assert "was changed successfully" in (page.text_content(".messagelist") or "")

        frame, _took = _wait_for_error(ws, within=10)
        assert frame["payload"]["code"] == "forbidden" and frame["header"]["channel"] == "chat.lobby"

    assert AccessPolicy.objects.get(pk=policy.pk).text.replace("\r\n", "\n") == edited
    deadline = time.monotonic() + 5
    while not AuditEvent.objects.filter(action="policy.change_confirmed").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    event = AuditEvent.objects.get(action="policy.change_confirmed")
    assert event.details["confirmed"] is True and event.details["live_subscriptions_ending"] == 1
    assert event.details["changed_policies"] == ["signed-in-chat"]
    ending = {"principal": f'carla (User::"{carla.pk}")', "action": "subscribe", "resource": 'Channel::"chat.lobby"'}
    assert event.details["live_examples"] == [ending], json.dumps(event.details)
    assert {**ending, "change": "loses"} in event.details["examples"]


def test_a_failing_policy_test_blocks_the_save_with_its_message(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    import importlib

    from django.apps import apps

    importlib.import_module("policies.migrations.0010_default_policy_tests").install(apps, None)  # flushed by now
    make_user("chief", superuser=True)
    sign_in(page, live_daphne, "/admin/policies/accesspolicy/add/")
    page.fill("#id_name", "no-chat")
    page.fill("#id_text", 'forbid(principal, action, resource is Channel)\nwhen { resource.namespace == "chat" };')
    page.click("input[name=_save]")

    error = page.text_content(".field-text .errorlist") or ""
    assert "policy test signed-in-users-read-chat failed" in error
    assert "expected allow, got deny (determining policies: no-chat)" in error
    assert "Everyone signed in may use chat.*" in error  # the case's note
    assert not AccessPolicy.objects.filter(name="no-chat").exists()
