"""Document pages and the REST API: list, create, rename, delete, history, export, import (sharing: test_sharing.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from pycrdt import XmlFragment

from collab import convert, services
from collab.models import Document, DocumentVersion
from policies.services import share_grant

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob: Any) -> Client:
    client = Client()
    client.force_login(bob)
    return client


def fill(markdown: str) -> Callable[[XmlFragment], None]:
    return lambda fragment: convert.markdown_into(fragment, markdown)


def content_markdown(document: Document) -> str:
    fragment = services.load_doc(services.document_state(document_id=document.pk)).get("default", type=XmlFragment)
    return convert.to_markdown(convert.to_json(fragment))


def test_the_list_shows_mine_and_shared_and_searches(alice: Any, bob: Any, alice_client: Client) -> None:
    services.document_create(owner=alice, title="Roadmap")
    services.document_create(owner=alice, title="Groceries")
    theirs = services.document_create(owner=bob, title="Bob's notes")
    share_grant(resource_type="Document", resource_id=theirs.pk, role="viewer", user=alice)
    services.document_create(owner=bob, title="Private")
    page = alice_client.get(reverse("collab:list")).content.decode()
    assert "Roadmap" in page and "Groceries" in page and "Bob&#x27;s notes" in page and "Private" not in page
    page = alice_client.get(reverse("collab:list"), {"q": "road"}).content.decode()
    assert "Roadmap" in page and "Groceries" not in page


def test_create_rename_and_delete_with_confirmation(alice_client: Client) -> None:
    response = alice_client.post(reverse("collab:list"), {"title": "Draft"})
    document = Document.objects.get(title="Draft")
    assert response["Location"] == reverse("collab:editor", args=[document.pk])
    alice_client.post(reverse("collab:rename", args=[document.pk]), {"title": "Final"})
    document.refresh_from_db()
    assert document.title == "Final"
    confirm = alice_client.get(reverse("collab:delete", args=[document.pk]))
    assert b"cannot be undone" in confirm.content and Document.objects.filter(pk=document.pk).exists()
    alice_client.post(reverse("collab:delete", args=[document.pk]))
    assert not Document.objects.filter(pk=document.pk).exists()


def test_the_editor_page_is_read_only_for_viewers_and_hidden_from_outsiders(
    alice: Any, bob: Any, bob_client: Client, make_user: Callable[..., Any]
) -> None:
    document = services.document_create(owner=alice, title="Spec")
    assert bob_client.get(reverse("collab:editor", args=[document.pk])).status_code == 404
    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob)
    page = bob_client.get(reverse("collab:editor", args=[document.pk]))
    assert page.status_code == 200
    assert b'"canEdit": false' in page.content and b"readonly-note" in page.content
    assert bob_client.post(reverse("collab:rename", args=[document.pk]), {"title": "x"}).status_code == 403


def test_versions_preview_and_restore_as_a_new_change(alice: Any, alice_client: Client) -> None:
    document = services.document_create(owner=alice, title="History", initial=fill("# First\n\nversion one\n"))
    alice_client.post(reverse("collab:history", args=[document.pk]), {"name": "v1"})
    version = DocumentVersion.objects.get(document=document, name="v1")

    def rewrite(fragment: XmlFragment) -> None:
        del fragment.children[0 : len(fragment.children)]
        convert.markdown_into(fragment, "completely different\n")

    services.document_change(document=document, user=alice, change=rewrite)
    assert "completely different" in content_markdown(document)
    preview = alice_client.get(reverse("collab:version", args=[document.pk, version.pk])).content.decode()
    assert "<h1>First</h1>" in preview and "version one" in preview
    alice_client.post(reverse("collab:restore", args=[document.pk, version.pk]))
    assert content_markdown(document) == "# First\n\nversion one\n"
    # the restore is a new update in the log, on top of the rewrite
    services.document_compact(document_id=document.pk)
    history = alice_client.get(reverse("collab:history", args=[document.pk])).content.decode()
    assert "automatic snapshot" in history and "alice" in history


def test_export_markdown_html_json_and_import_markdown(alice_client: Client) -> None:
    upload = SimpleUploadedFile("notes.md", b"# Notes\n\n- **bold** item\n- [link](https://example.com)\n")
    response = alice_client.post(reverse("collab:import"), {"file": upload})
    document = Document.objects.get(title="Notes")  # from the first # heading
    assert response["Location"] == reverse("collab:editor", args=[document.pk])
    md = alice_client.get(reverse("collab:export", args=[document.pk, "md"]))
    assert md["Content-Disposition"] == 'attachment; filename="notes.md"'
    assert md.content.decode() == "# Notes\n\n- **bold** item\n- [link](https://example.com)\n"
    html = alice_client.get(reverse("collab:export", args=[document.pk, "html"])).content.decode()
    assert "<h1>Notes</h1>" in html and '<a href="https://example.com">link</a>' in html
    tree = alice_client.get(reverse("collab:export", args=[document.pk, "json"])).json()
    assert tree["content"][0] == {
        "type": "heading",
        "attrs": {"level": 1},
        "content": [{"type": "text", "text": "Notes"}],
    }
    assert alice_client.get(reverse("collab:export", args=[document.pk, "exe"])).status_code == 404


def test_importing_a_binary_file_is_refused_with_a_message(alice_client: Client) -> None:
    upload = SimpleUploadedFile("bad.md", b"\xff\xfe\x00binary")
    response = alice_client.post(reverse("collab:import"), {"file": upload}, follow=True)
    assert "not UTF-8" in response.content.decode()
    assert not Document.objects.exists()


def test_exported_html_never_carries_script_links(alice: Any) -> None:
    tree = {
        "type": "doc",
        "content": [
            {
                "type": "paragraph",
                "content": [
                    {
                        "type": "text",
                        "text": "<b>x</b>",
                        "marks": [{"type": "link", "attrs": {"href": "javascript:alert(1)"}}],
                    }
                ],
            }
        ],
    }
    html = convert.to_html(tree)
    assert "javascript:" not in html and "&lt;b&gt;" in html


# --- REST ------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_rest_crud_versions_and_export(alice: Any, mint_token: Callable[..., str]) -> None:
    token = mint_token("alice", "docs:read docs:write")
    client = Client()
    created = client.post(
        "/api/documents/",
        {"title": "API doc", "markdown": "hello *world*"},
        content_type="application/json",
        **bearer(token),
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert (
        body["title"] == "API doc" and body["can_edit"] is True and body["websocket_path"] == f"/ws/docs/{body['id']}"
    )
    doc_id = body["id"]
    assert [d["id"] for d in client.get("/api/documents/", **bearer(token)).json()] == [doc_id]
    renamed = client.patch(
        f"/api/documents/{doc_id}/", {"title": "Renamed"}, content_type="application/json", **bearer(token)
    )
    assert renamed.json()["title"] == "Renamed"
    version = client.post(
        f"/api/documents/{doc_id}/versions/", {"name": "v1"}, content_type="application/json", **bearer(token)
    )
    assert version.status_code == 201
    assert client.get(f"/api/documents/{doc_id}/versions/", **bearer(token)).json()[0]["name"] == "v1"
    restored = client.post(f"/api/documents/{doc_id}/versions/{version.json()['id']}/restore/", **bearer(token))
    assert restored.status_code == 200
    exported = client.get(f"/api/documents/{doc_id}/export/md/", **bearer(token))
    assert exported.content.decode() == "hello *world*\n"
    assert client.delete(f"/api/documents/{doc_id}/", **bearer(token)).status_code == 204
    assert client.get(f"/api/documents/{doc_id}/", **bearer(token)).status_code == 404


def test_rest_scopes_and_rights(alice: Any, bob: Any, mint_token: Callable[..., str]) -> None:
    document = services.document_create(owner=alice, title="Mine")
    client = Client()
    read_only = mint_token("alice", "docs:read")
    response = client.patch(
        f"/api/documents/{document.pk}/", {"title": "x"}, content_type="application/json", **bearer(read_only)
    )
    assert response.status_code == 403 and response.json()["code"] == "insufficient_scope"
    bob_token = mint_token("bob", "docs:read docs:write")
    assert client.get(f"/api/documents/{document.pk}/", **bearer(bob_token)).status_code == 404
    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=bob)
    assert client.get(f"/api/documents/{document.pk}/", **bearer(bob_token)).json()["can_edit"] is False
    denied = client.delete(f"/api/documents/{document.pk}/", **bearer(bob_token))
    assert denied.status_code == 403 and "detail" in denied.json()
    assert client.get("/api/documents/").status_code in {401, 403}


def test_documents_are_in_the_openapi_schema(alice_client: Client) -> None:
    schema = alice_client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/documents/" in schema and "/api/documents/{document_id}/versions/" in schema
