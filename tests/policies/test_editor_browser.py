"""The access-policy form's Cedar editor (CodeMirror 6 + cedar-wasm): errors at line and column as you
type, before saving; formatting; completion from the schema; the server still validates on save."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policies.models import AccessPolicy
from tests.conftest import LiveServer
from tests.policies.test_impact_browser import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TYPO = 'permit(principal, action, resource is Channel)\nwhen { resource.namespaec == "ops" };'


def test_the_editor_shows_a_line_and_column_error_before_saving(
    page: Any, live_server_factory: Callable[..., LiveServer], make_user: Any
) -> None:
    live_daphne = live_server_factory()  # its own: it saves through the admin (see test_impact_browser.py)
    make_user("chief", superuser=True)
    sign_in(page, live_daphne, "/admin/policies/accesspolicy/add/")
    page.wait_for_selector(".policy-editor[data-ready=true]")
    page.fill("#id_name", "ops-typo")
    page.fill(".policy-editor .cm-content", TYPO)

    error = page.locator(".policy-editor-error").first
    error.wait_for()
    page.screenshot(path="test-artifacts/policy-editor-error.png", full_page=True)
    text = error.text_content() or ""
    assert text.startswith("line 2, column ") and "namespaec" in text
    assert page.locator(".cm-lintRange-error").count() >= 1  # underlined in the text
    assert not AccessPolicy.objects.filter(name="ops-typo").exists()  # nothing was sent
    assert page.input_value("#id_text") == TYPO  # the form field follows the editor

    # Fixed, it validates; Format lays it out as Cedar's formatter does; the server saves it.
    page.fill(
        ".policy-editor .cm-content", 'permit(principal,action,resource is Channel) when {resource.namespace=="ops"};'
    )
    page.wait_for_selector(".policy-editor-status:not(.has-errors):has-text('Valid against the schema')")
    page.click(".policy-format")
    formatted = page.input_value("#id_text")
    assert formatted.startswith("permit (") and 'resource.namespace == "ops"' in formatted
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/policies/accesspolicy/")
    assert AccessPolicy.objects.get(name="ops-typo").text.replace("\r\n", "\n") == formatted.strip()


def test_the_editor_completes_entity_types_and_attributes_from_the_schema(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    make_user("chief", superuser=True)
    sign_in(page, live_daphne, "/admin/policies/accesspolicy/add/")
    page.wait_for_selector(".policy-editor[data-ready=true]")
    page.click(".policy-editor .cm-content")
    page.keyboard.type("Dashb", delay=30)
    option = page.locator(".cm-tooltip-autocomplete li", has_text="Dashboard").first
    option.wait_for()
    page.keyboard.press("Control+a")
    page.keyboard.type("anonymous_r", delay=30)
    page.locator(".cm-tooltip-autocomplete li", has_text="anonymous_read").first.wait_for()
