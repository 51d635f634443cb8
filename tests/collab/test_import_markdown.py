"""Markdown import: the title comes from the first `# heading`, and tables stay tables.

The editor (Tiptap's StarterKit) has no table nodes, so a table is imported as a code block
(language "table") holding the re-aligned table, and exported back as a Markdown table and an
HTML <table>."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from collab import convert
from collab.models import Document
from tests.conftest import PASSWORD, ROOT, LiveServer

pytestmark = pytest.mark.django_db

TABLE_MD = """# Team *roster*

Who does what.

| Name | Role | Hours |
|:-----|:----:|------:|
| **alice** | editor | 30 |
| bob | viewer \\| guest | 5 |
"""
ALIGNED = (
    "| Name      |      Role       | Hours |\n"
    "| :-------- | :-------------: | ----: |\n"
    "| **alice** |     editor      |    30 |\n"
    "| bob       | viewer \\| guest |     5 |"
)


@pytest.fixture
def alice_client(client: Client, alice: Any) -> Client:
    client.force_login(alice)
    return client


def import_file(client: Client, name: str, content: str) -> Document:
    response = client.post(reverse("collab:import"), {"file": SimpleUploadedFile(name, content.encode())})
    assert response.status_code == 302, response.content
    document = Document.objects.order_by("-pk").first()
    assert document is not None and response["Location"] == reverse("collab:editor", args=[document.pk])
    return document


@pytest.mark.parametrize(
    ("source", "title"),
    [
        ("# Quarterly plan\n\ntext", "Quarterly plan"),
        ("Intro first.\n\n## Not this\n\n# The *real* `title`\n", "The real title"),
        ("Setext title\n============\n\nbody", "Setext title"),
        ("```\n# not a heading, code\n```\n\n# After the code\n", "After the code"),
    ],
)
def test_the_title_is_the_first_level_one_heading(alice_client: Client, source: str, title: str) -> None:
    assert import_file(alice_client, "file-name.md", source).title == title


@pytest.mark.parametrize("source", ["## Only a second level\n\nbody", "no heading at all", "#\n\n#   \n"])
def test_without_a_level_one_heading_the_title_is_the_file_name(alice_client: Client, source: str) -> None:
    assert import_file(alice_client, "meeting-notes.md", source).title == "meeting-notes"


def test_a_long_heading_is_cut_to_the_title_length() -> None:
    assert convert.markdown_title("# " + "x" * 500) == "x" * 200


def test_a_table_is_imported_as_an_aligned_table_block_and_exported_as_a_table(alice_client: Client) -> None:
    document = import_file(alice_client, "roster.md", TABLE_MD)
    assert document.title == "Team roster"
    tree = alice_client.get(reverse("collab:export", args=[document.pk, "json"])).json()
    assert [node["type"] for node in tree["content"]] == ["heading", "paragraph", "codeBlock"]
    table = tree["content"][2]
    assert table["attrs"] == {"language": "table"}
    assert table["content"] == [{"type": "text", "text": ALIGNED}]

    markdown = alice_client.get(reverse("collab:export", args=[document.pk, "md"])).content.decode()
    assert markdown == "# Team *roster*\n\nWho does what.\n\n" + ALIGNED + "\n"
    html = alice_client.get(reverse("collab:export", args=[document.pk, "html"])).content.decode()
    assert '<th style="text-align:center">Role</th>' in html
    assert "<td><strong>alice</strong></td>" in html.replace(' style="text-align:left"', "")
    assert '<td style="text-align:center">viewer | guest</td>' in html and "```" not in html

    # The exported Markdown imports back to the same document.
    again = import_file(alice_client, "roster-2.md", markdown)
    assert alice_client.get(reverse("collab:export", args=[again.pk, "json"])).json() == tree


def test_the_imported_documents_version_times_name_their_time_zone(alice_client: Client) -> None:
    import re

    document = import_file(alice_client, "roster.md", TABLE_MD)
    alice_client.post(reverse("collab:history", args=[document.pk]), {"name": "as imported"})
    history = alice_client.get(reverse("collab:history", args=[document.pk])).content.decode()
    assert re.search(r">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>", history), history
    version = document.versions.get(name="as imported")
    preview = alice_client.get(reverse("collab:version", args=[document.pk, version.pk])).content.decode()
    assert re.search(r"Read-only preview, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", preview)


def test_a_table_inside_a_quote_and_wide_characters_line_up() -> None:
    from pycrdt import Doc, XmlFragment

    doc: Doc[Any] = Doc()
    fragment = doc.get("t", type=XmlFragment)
    with doc.transaction():
        convert.markdown_into(fragment, "> | 名前 | n |\n> |---|---|\n> | 花子 | 1 |\n> | al | 22 |\n")
    quote = convert.to_json(fragment)["content"][0]
    assert quote["type"] == "blockquote"
    assert quote["content"][0]["content"][0]["text"] == (
        "| 名前 | n   |\n| ---- | --- |\n| 花子 | 1   |\n| al   | 22  |"
    )


def test_table_html_export_never_carries_raw_html_or_script_links() -> None:
    tree = {
        "type": "doc",
        "content": [
            {
                "type": "codeBlock",
                "attrs": {"language": "table"},
                "content": [
                    {
                        "type": "text",
                        "text": "| a | b |\n|---|---|\n"
                        "| <script>x()</script> | [x](javascript:alert(1)) ![i](http://t.example/p.png) |",
                    }
                ],
            }
        ],
    }
    html = convert.to_html(tree)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "javascript:" not in html.replace("[x](javascript:alert(1))", "") and "<img" not in html


# --- In a real browser --------------------------------------------------------------------------


@pytest.fixture
def own_server(live_server_factory: Callable[..., LiveServer]) -> Iterator[LiveServer]:
    server = live_server_factory()
    yield server
    server.stop()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_importing_a_file_in_the_browser_names_the_document_and_shows_the_table(
    page: Any, own_server: LiveServer, alice: Any, tmp_path: Any
) -> None:
    source = tmp_path / "export-2026.md"
    source.write_text(TABLE_MD)
    page.goto(f"{own_server.url}/accounts/login/?next=/docs/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/docs/")
    page.set_input_files("[data-testid=import-file]", str(source))
    page.click("[data-testid=import]")
    page.wait_for_url("**/docs/*/")
    assert page.input_value("[data-testid=doc-title-input]") == "Team roster"  # the owner edits it inline
    block = page.locator("[data-testid=editor] .tiptap pre code")
    block.wait_for()
    assert block.inner_text() == ALIGNED
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    page.screenshot(path=str(ROOT / "test-artifacts" / "markdown-import-table.png"), full_page=True)
