"""The admin as an administrator sees it: model names read right, and the whole audit chain verifies from the
audit trail's list without selecting anything."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PASSWORD, LiveServer
from webconnect.models import AuditEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_verify_the_whole_audit_chain_from_the_changelist_button(
    page: Any, live_daphne: LiveServer, make_user: Any
) -> None:
    make_user("auditor", superuser=True)
    page.goto(f"{live_daphne.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "auditor")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
    index = page.text_content("#content-main") or ""
    assert "Connection-limit policies" in index and "policys" not in index.lower()

    page.goto(f"{live_daphne.url}/admin/webconnect/auditevent/")
    # Verifying is not an action on a selection any more.
    assert "Verify" not in (page.text_content("select[name=action]") or "")

    with page.expect_navigation(url="**/admin/webconnect/auditevent/"):
        page.click("[data-testid=verify-audit-chain]")  # nothing ticked
    checked = AuditEvent.objects.count()
    assert checked >= 1  # at least the sign-in above
    message = page.text_content(".messagelist .success") or ""
    assert message == f"The audit chain verifies: {checked} event{'' if checked == 1 else 's'} checked."

    edited = AuditEvent.objects.order_by("id").first()
    assert edited is not None
    AuditEvent.objects.filter(pk=edited.pk).update(target="rewritten")
    with page.expect_navigation(url="**/admin/webconnect/auditevent/"):
        page.click("[data-testid=verify-audit-chain]")
    error = page.text_content(".messagelist .error") or ""
    assert f"breaks at event #{edited.pk}" in error and "edited" in error
