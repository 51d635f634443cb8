"""An administrator writes a policy with a mistake, reads the error, fixes it and tries it in the simulator."""

from __future__ import annotations

from typing import Any

import pytest

from policies.models import AccessPolicy
from tests.conftest import PASSWORD, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROKEN = 'forbid(principal in Role::"contractors", action, resource is Channel)\nwhen { resource.namespaec == "ops" };'
FIXED = BROKEN.replace("namespaec", "namespace")


def test_create_a_policy_with_an_error_fix_it_and_run_the_simulator(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    make_user("chief", superuser=True)
    make_user("carla")
    page.goto(f"{live_daphne.url}/admin/login/?next=/admin/policies/accesspolicy/")
    page.fill("#id_username", "chief")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/policies/accesspolicy/")

    page.click(".object-tools a.addlink")
    page.fill("#id_name", "contractors-no-ops")
    page.fill("#id_text", BROKEN)
    page.click("input[name=_save]")
    error = page.text_content(".field-text .errorlist")
    assert error is not None and "contractors-no-ops:" in error and "namespaec" in error
    assert page.input_value("#id_text") == BROKEN  # the text stays beside the message
    assert not AccessPolicy.objects.filter(name="contractors-no-ops").exists()

    page.fill("#id_text", FIXED)
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/policies/accesspolicy/")
    assert "was added successfully" in (page.text_content(".messagelist") or "")
    assert AccessPolicy.objects.filter(name="contractors-no-ops").exists()

    page.click(".object-tools a.simulator-link")
    page.fill("#id_username", "carla")
    page.select_option("#id_action", "publish")
    page.select_option("#id_resource_type", "Channel")
    page.fill("#id_resource_id", "chat.lobby")
    page.fill("#id_client_ip", "10.1.2.3")
    page.click("input[name=_evaluate]")
    assert page.text_content("#decision") == "ALLOW"
    assert "signed-in-chat" in (page.text_content("#determining") or "")

    page.fill("#id_resource_id", "ops.alerts")
    page.click("input[name=_evaluate]")
    assert page.text_content("#decision") == "DENY"
    assert page.text_content("#reason") == "no policy permits this"
