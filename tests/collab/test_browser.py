"""Two real Chromium pages co-edit one document through a live Daphne."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from collab import services
from policies.services import share_grant
from tests.conftest import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

EDITOR = "[data-testid=editor] .tiptap"


@pytest.fixture
def live_daphne(live_server_factory: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    """A Daphne of its own per test: a shared one can cache the policy set it read while
    the previous test's flush had emptied the tables."""
    server = live_server_factory()
    yield server
    server.stop()


def wait_connected(page: Any) -> None:
    page.wait_for_selector("[data-testid=connection-status][data-state=connected]")


def editor_text(page: Any) -> str:
    """The document's text (innerText would include the other people's caret labels)."""
    return str(page.evaluate("window.webconnectEditor.editor.getText()"))


def test_two_pages_co_edit_see_each_other_and_converge_after_offline(
    open_page: Callable[[str], Any], live_daphne: LiveServer, alice: Any, bob: Any
) -> None:
    document = services.document_create(owner=alice, title="Live doc")
    share_grant(resource_type="Document", resource_id=document.pk, role="editor", user=bob)
    url = f"{live_daphne.url}/docs/{document.pk}/"

    alice_page = open_page("alice")
    alice_page.click("[data-testid=link-documents]")
    alice_page.click("text=Live doc")
    alice_page.wait_for_url(url)
    bob_page = open_page("bob")
    bob_page.goto(url)
    wait_connected(alice_page)
    wait_connected(bob_page)

    alice_page.click(EDITOR)
    alice_page.keyboard.type("Hello from alice.")
    bob_page.wait_for_function("window.webconnectEditor.editor.getText().includes('Hello from alice.')")
    bob_page.click(EDITOR)
    bob_page.keyboard.press("End")
    bob_page.keyboard.type(" Bob here.")
    alice_page.wait_for_function("window.webconnectEditor.editor.getText().includes('Bob here.')")
    # presence: both avatars on both pages, and the other one's named caret
    alice_page.wait_for_function("document.querySelectorAll('[data-testid=avatar]').length === 2")
    bob_page.wait_for_function("document.querySelectorAll('[data-testid=avatar]').length === 2")
    alice_page.wait_for_selector(".collaboration-carets__label:has-text('bob')")

    # toolbar: bold through the button, on a selection (a bold "stored mark" on an empty
    # selection is dropped by any remote update that lands before the typing)
    alice_page.keyboard.press("Enter")
    alice_page.keyboard.type("strong words")
    alice_page.keyboard.press("Shift+Home")
    alice_page.click("button[data-action=bold]")
    bob_page.wait_for_selector(f"{EDITOR} strong:has-text('strong words')")

    # bob goes offline; both keep typing; he comes back; they converge
    bob_page.evaluate("window.webconnectEditor.provider.disconnect()")
    bob_page.wait_for_selector("[data-testid=connection-status][data-state=offline]")
    bob_page.click(EDITOR)
    bob_page.keyboard.press("Control+End")
    bob_page.keyboard.type(" offline-bob")
    bob_page.wait_for_selector("[data-testid=connection-status][data-pending=true]")
    alice_page.click(EDITOR)
    alice_page.keyboard.press("Control+Home")
    alice_page.keyboard.type("online-alice ")
    bob_page.evaluate("window.webconnectEditor.provider.connect()")
    wait_connected(bob_page)
    for page in (alice_page, bob_page):
        page.wait_for_function(
            "(() => { const t = window.webconnectEditor.editor.getText();"
            " return t.includes('offline-bob') && t.includes('online-alice'); })()"
        )
    assert editor_text(alice_page) == editor_text(bob_page)
    assert bob_page.get_attribute("[data-testid=connection-status]", "data-pending") == "false"

    # a reload shows the same content, from the server
    final = editor_text(alice_page)
    alice_page.reload()
    wait_connected(alice_page)
    alice_page.wait_for_function("(t) => window.webconnectEditor.editor.getText() === t", arg=final)


def test_a_viewer_sees_live_edits_in_a_read_only_editor(
    open_page: Callable[[str], Any], live_daphne: LiveServer, alice: Any, bob: Any
) -> None:
    document = services.document_create(owner=alice, title="Read me")
    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob)
    url = f"{live_daphne.url}/docs/{document.pk}/"
    alice_page = open_page("alice")
    alice_page.goto(url)
    bob_page = open_page("bob")
    bob_page.goto(url)
    wait_connected(alice_page)
    wait_connected(bob_page)
    assert bob_page.get_attribute(EDITOR, "contenteditable") == "false"
    assert bob_page.is_visible("[data-testid=readonly-note]")
    assert bob_page.is_disabled("button[data-action=bold]")
    alice_page.click(EDITOR)
    alice_page.keyboard.type("Only alice writes.")
    bob_page.wait_for_function("window.webconnectEditor.editor.getText().includes('Only alice writes.')")
    # even a forced local edit on the viewer's page never reaches alice
    bob_page.evaluate("window.webconnectEditor.editor.setEditable(true)")
    bob_page.click(EDITOR)
    bob_page.keyboard.type("sneaky ")
    alice_page.wait_for_timeout(800)
    assert "sneaky" not in editor_text(alice_page)


def test_export_downloads_and_history_restores(
    open_page: Callable[[str], Any], live_daphne: LiveServer, alice: Any
) -> None:
    document = services.document_create(owner=alice, title="Versioned")
    page = open_page("alice")
    page.goto(f"{live_daphne.url}/docs/{document.pk}/")
    wait_connected(page)
    page.click(EDITOR)
    page.keyboard.type("first draft")
    page.wait_for_timeout(300)
    page.click("[data-testid=history-link]")
    page.fill("[data-testid=version-name]", "draft one")
    page.click("[data-testid=save-version]")
    page.click("[data-testid=preview-version]")
    assert "first draft" in page.inner_text("[data-testid=version-content]")
    page.goto(f"{live_daphne.url}/docs/{document.pk}/")
    wait_connected(page)
    page.click(EDITOR)
    page.keyboard.press("Control+a")
    page.keyboard.type("rewritten")
    page.wait_for_function("window.webconnectEditor.editor.getText() === 'rewritten'")
    page.wait_for_timeout(300)
    page.goto(f"{live_daphne.url}/docs/{document.pk}/history/")
    page.click("[data-testid=preview-version] >> nth=0")
    page.click("[data-testid=restore]")
    wait_connected(page)
    page.wait_for_function("window.webconnectEditor.editor.getText() === 'first draft'")
    with page.expect_download() as download_info:
        page.click("[data-testid=export-md]")
    download = download_info.value
    assert download.suggested_filename == "versioned.md"
    with open(download.path(), encoding="utf-8") as handle:
        assert handle.read() == "first draft\n"


def test_an_empty_document_invites_writing_its_title_edits_inline_and_signing_out_stops_the_editor(
    open_page: Callable[[str], Any], live_daphne: LiveServer, alice: Any
) -> None:
    from collab.models import Document

    document = services.document_create(owner=alice, title="Untitled")
    page = open_page("alice")
    page.goto(f"{live_daphne.url}/docs/{document.pk}/")
    wait_connected(page)
    placeholder = page.locator(f"{EDITOR} p.is-empty")
    assert placeholder.get_attribute("data-placeholder") == "Start writing…"
    page.click(EDITOR)
    page.keyboard.type("First words")
    page.wait_for_function("!document.querySelector('[data-testid=editor] .tiptap p.is-empty')")

    title = page.locator("[data-testid=doc-title-input]")
    title.fill("Meeting notes")
    title.press("Enter")
    page.wait_for_selector("[data-testid=doc-title-input][data-state=saved]")
    assert Document.objects.get(pk=document.pk).title == "Meeting notes"
    assert page.title().startswith("Meeting notes")

    # Signing out in another tab ends this page's socket (4002): it says so and stops editing.
    other = page.context.new_page()
    other.goto(f"{live_daphne.url}/")
    other.click("form[action$='/accounts/logout/'] button")
    status = page.locator("[data-testid=connection-status]")
    page.wait_for_selector("[data-testid=connection-status][data-state=denied]")
    assert "signed out" in (status.text_content() or "")
    assert page.evaluate("window.webconnectEditor.editor.isEditable") is False
