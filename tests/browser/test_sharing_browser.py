"""The share dialog in Chromium: the picker, a read-only viewer, a group share of a dashboard, live revocation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group

from collab import services as collab_services
from dashboards import services as dashboard_services
from policies.models import ShareGrant
from tests.conftest import ARTIFACTS, PASSWORD, LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

EDITOR = "[data-testid=editor] .tiptap"
DIALOG = "[data-testid=share-dialog]"


@pytest.fixture
def live_daphne(live_server_factory: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    """A Daphne of its own per test: a shared one can hold the policy set of the previous
    test's database (flushed and refilled under the same version number)."""
    server = live_server_factory()
    yield server
    server.stop()


def pick(page: Any, typed: str, name: str) -> None:
    """Type into the picker, wait for the suggestions, choose `name`."""
    page.click("[data-testid=share-who]")
    page.keyboard.type(typed, delay=60)
    page.wait_for_selector(f"[data-testid=share-option][data-name='{name}']")


def test_sharing_a_document_with_a_viewer_then_revoking_ends_his_live_access(
    open_page: Callable[[str], Any], live_daphne: LiveServer, alice: Any, bob: Any, make_user: Callable[..., Any]
) -> None:
    bob.first_name, bob.last_name = "Bob", "Builder"
    bob.save()
    make_user("bobby")
    Group.objects.create(name="bob-fans")
    document = collab_services.document_create(owner=alice, title="Launch plan")
    url = f"{live_daphne.url}/docs/{document.pk}/"

    alice_page = open_page("alice")
    alice_page.goto(url)
    alice_page.wait_for_selector("[data-testid=connection-status][data-state=connected]")
    alice_page.click("[data-testid=share-open]")
    alice_page.wait_for_selector(f"{DIALOG}[open]")
    assert alice_page.text_content("[data-testid=share-owner]").split() == ["alice", "owner"]

    pick(alice_page, "bo", "bob")
    options = alice_page.locator("[data-testid=share-option]")
    assert options.count() == 3  # bob, bobby and the group bob-fans; exact and prefix matches first
    assert "Bob Builder (bob)" in options.nth(0).inner_text()
    assert alice_page.get_attribute("[data-testid=share-who]", "aria-expanded") == "true"
    ARTIFACTS.mkdir(exist_ok=True)
    alice_page.screenshot(path=str(ARTIFACTS / "share-dialog-picker.png"))
    # The keyboard works too: down to bobby, up to bob, Enter chooses.
    alice_page.keyboard.press("ArrowDown")
    alice_page.keyboard.press("ArrowUp")
    alice_page.keyboard.press("Enter")
    assert alice_page.input_value("[data-testid=share-who]") == "Bob Builder (bob)"
    alice_page.select_option("[data-testid=share-role]", "viewer")
    alice_page.click("[data-testid=share-submit]")
    alice_page.wait_for_selector("[data-testid=share-row][data-name=bob][data-role=viewer]")
    assert "Shared with Bob Builder (bob) as viewer." in alice_page.text_content("[data-testid=share-message]")
    alice_page.locator(DIALOG).screenshot(path=str(ARTIFACTS / "share-dialog.png"))
    grant = ShareGrant.objects.select_related("template").get()
    assert (grant.user_id, grant.template.name, grant.resource_id) == (bob.pk, "share-viewer", str(document.pk))
    alice_page.keyboard.press("Escape")  # closes the dialog
    alice_page.wait_for_selector(f"{DIALOG}:not([open])", state="attached")

    # bob's page is read-only, live, and offers no sharing
    bob_page = open_page("bob")
    bob_page.goto(url)
    bob_page.wait_for_selector("[data-testid=connection-status][data-state=connected]")
    assert bob_page.get_attribute(EDITOR, "contenteditable") == "false"
    assert bob_page.is_visible("[data-testid=readonly-note]")
    assert bob_page.locator("[data-testid=share-open]").count() == 0
    alice_page.click(EDITOR)
    alice_page.keyboard.type("Ship on Friday.")
    bob_page.wait_for_function("window.webconnectEditor.editor.getText().includes('Ship on Friday.')")

    # alice removes bob: his open socket is closed and his page says so
    alice_page.click("[data-testid=share-open]")
    alice_page.wait_for_selector("[data-testid=share-row][data-name=bob]")
    alice_page.click("[data-testid=share-row][data-name=bob] [data-testid=share-remove]")
    alice_page.wait_for_selector("[data-testid=share-row]", state="detached")
    assert "no longer has access" in alice_page.text_content("[data-testid=share-message]")
    bob_page.wait_for_selector("[data-testid=connection-status][data-state=denied]")
    assert "revoked" in bob_page.text_content("[data-testid=connection-status]")
    assert not ShareGrant.objects.exists()
    assert bob_page.goto(url).status == 404


def test_sharing_a_dashboard_with_a_group_through_the_picker(
    open_page: Callable[[str], Any], live_daphne: LiveServer, alice: Any, make_user: Callable[..., Any]
) -> None:
    carol = make_user("carol")
    ops = Group.objects.create(name="ops")
    carol.groups.add(ops)
    board = dashboard_services.dashboard_create(owner=alice, title="Line 3")

    carol_page = open_page("carol")
    assert carol_page.goto(f"{live_daphne.url}/dashboards/{board.pk}/").status == 404

    alice_page = open_page("alice")
    alice_page.goto(f"{live_daphne.url}/dashboards/{board.pk}/")
    alice_page.click("[data-testid=share-open]")
    pick(alice_page, "op", "ops")
    alice_page.click("[data-testid=share-option][data-name=ops]")
    alice_page.select_option("[data-testid=share-role]", "editor")
    alice_page.click("[data-testid=share-submit]")
    alice_page.wait_for_selector("[data-testid=share-row][data-name=ops][data-type=group][data-role=editor]")
    alice_page.locator(DIALOG).screenshot(path=str(ARTIFACTS / "share-dialog-dashboard.png"))

    carol_page.goto(f"{live_daphne.url}/dashboards/")
    carol_page.click("text=Line 3")
    carol_page.wait_for_selector("[data-testid=dashboard-title]:has-text('Line 3')")
    assert carol_page.locator("[data-testid=edit-toggle]").count() == 1  # an editor
    assert carol_page.locator("[data-testid=share-open]").count() == 0

    # A role change in the list applies at once.
    alice_page.select_option("[data-testid=share-row][data-name=ops] [data-testid=share-row-role]", "viewer")
    alice_page.wait_for_selector("[data-testid=share-row][data-name=ops][data-role=viewer]")
    carol_page.reload()
    carol_page.wait_for_selector("[data-testid=dashboard-title]")
    assert carol_page.locator("[data-testid=edit-toggle]").count() == 0


def test_an_administrator_shares_from_the_admin_with_the_user_picker(
    page: Any, live_daphne: LiveServer, alice: Any, bob: Any, make_user: Callable[..., Any]
) -> None:
    make_user("chief", superuser=True)
    document = collab_services.document_create(owner=alice, title="Budget")
    page.goto(f"{live_daphne.url}/admin/login/?next=/admin/collab/document/{document.pk}/change/")
    page.fill("#id_username", "chief")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("text=nobody (only the owner and staff)")
    page.click("text=add a share")  # the document's page links to a share form for it
    assert page.input_value("#id_resource_id") == str(document.pk)
    # The user field searches as you type (the admin's autocomplete).
    page.click(".field-user .select2-selection")
    page.keyboard.type("bo", delay=60)
    page.click(".select2-results__option:has-text('bob')")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/policies/sharegrant/")
    assert "was added successfully" in (page.text_content(".messagelist") or "")
    row = page.text_content("#result_list tbody tr") or ""
    assert "Budget" in row and "bob" in row and "viewer" in row
    grant = ShareGrant.objects.select_related("template").get()
    assert (grant.user_id, grant.template.name, grant.created_by_id is not None) == (bob.pk, "share-viewer", True)
    page.goto(f"{live_daphne.url}/admin/collab/document/{document.pk}/change/")
    assert "bob" in (page.text_content(".field-shares") or "")
