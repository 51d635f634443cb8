"""An administrator writes a policy for a named user with the picker, in a real Chromium."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from policies.models import AccessPolicy
from tests.conftest import PASSWORD, LiveServer
from webconnect.authorization import Principal, Resource, authorize

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_server(live_server_factory: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    # Its own process: a server that already saved in the admin for an earlier test keeps
    # that test's ContentType ids cached, and the admin log entry of a second save then
    # points at a content type the flushed-and-restored database no longer has.
    server = live_server_factory()
    yield server
    server.stop()


def test_the_picker_inserts_a_user_by_name_and_the_policy_decides_for_them(
    page: Any, own_server: LiveServer, make_user: Any
) -> None:
    make_user("chief", superuser=True)
    bob = make_user("bob")
    bobby = make_user("bobby")
    alice = make_user("alice")
    page.goto(f"{own_server.url}/admin/login/?next=/admin/policies/accesspolicy/add/")
    page.fill("#id_username", "chief")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/policies/accesspolicy/add/")

    page.fill("#id_name", "bob-reads-ops")
    head = "permit(principal == "
    tail = ', action == Action::"subscribe", resource is Channel)\nwhen { resource.namespace == "ops" };'
    page.fill("#id_text", head + tail)
    # Put the cursor where the user goes, then search for him by name.
    page.wait_for_selector(".policy-editor[data-ready=true]")  # the Cedar editor holds the cursor
    page.eval_on_selector("#id_text", f"el => el.policyEditor.select({len(head)})")
    page.fill(".principal-search", "bo")
    choices = page.locator(".principal-choice")
    choices.first.wait_for()
    labels = choices.all_text_contents()
    page.screenshot(path="test-artifacts/policy-principal-picker.png")
    assert labels[:2] == [f'bob (User::"{bob.pk}")', f'bobby (User::"{bobby.pk}")']
    choices.first.click()

    expected = head + f'User::"{bob.pk}" // bob\n' + tail
    assert page.input_value("#id_text") == expected
    assert page.locator(".principal-choice").count() == 0  # the list closes after a pick

    # Enter in the search box picks the first match and never submits the form.
    page.eval_on_selector("#id_text", "el => el.policyEditor.select(el.value.length)")
    page.fill(".principal-search", "nobody-matches")
    page.locator(".principal-none").wait_for()
    page.press(".principal-search", "Enter")
    assert page.url.endswith("/admin/policies/accesspolicy/add/")
    assert not AccessPolicy.objects.filter(name="bob-reads-ops").exists()

    page.click("input[name=_continue]")
    page.wait_for_url("**/change/")
    assert f'User::"{bob.pk}" is bob' in (page.text_content(".field-principals") or "")
    policy = AccessPolicy.objects.get(name="bob-reads-ops")
    assert policy.text.replace("\r\n", "\n") == expected.strip()
    assert authorize(Principal(bob), "subscribe", Resource("Channel", "ops.alerts")).policies == ("bob-reads-ops",)
    assert not authorize(Principal(alice), "subscribe", Resource("Channel", "ops.alerts"))
