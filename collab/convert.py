"""Tiptap's Yjs XML <-> Markdown, HTML and ProseMirror JSON.

The Collaboration extension stores the ProseMirror document as an XmlFragment:
one XmlElement per node (tag = node type, attributes = node attrs) and XmlText
runs whose formatting attributes are the marks (bold, italic, code, link...).
"""

from __future__ import annotations

import html
import itertools
import unicodedata
from dataclasses import dataclass
from typing import Any

from markdown_it import MarkdownIt
from pycrdt import XmlElement, XmlFragment, XmlText

# --- Yjs XML -> ProseMirror JSON -------------------------------------------------------

MARK_ORDER = ["link", "bold", "italic", "strike", "code"]


def to_json(fragment: XmlFragment) -> dict[str, Any]:
    return {"type": "doc", "content": [node for child in fragment.children for node in _node_json(child)]}


def _node_json(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, XmlText):
        out = []
        for content, attrs in node.diff():
            if not isinstance(content, str) or not content:
                continue
            item: dict[str, Any] = {"type": "text", "text": content}
            if attrs:
                item["marks"] = [
                    {"type": name, **({"attrs": value} if isinstance(value, dict) and value else {})}
                    for name, value in attrs.items()
                ]
            out.append(item)
        return out
    if isinstance(node, XmlElement):
        item = {"type": node.tag or "paragraph"}
        attributes: Any = node.attributes
        attrs = {key: _plain(value) for key, value in attributes}
        if attrs:
            item["attrs"] = attrs
        content = [child for sub in node.children for child in _node_json(sub)]
        if content:
            item["content"] = content
        return [item]
    return []


def _plain(value: Any) -> Any:
    # Yjs numbers come back as floats: heading level 2.0 is 2.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# --- ProseMirror JSON -> Markdown / HTML ---------------------------------------------------


def _marks(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {mark["type"]: mark.get("attrs", {}) for mark in node.get("marks", [])}


def _inline_md(nodes: list[dict[str, Any]]) -> str:
    out = []
    for node in nodes:
        if node["type"] == "hardBreak":
            out.append("  \n")
            continue
        if node["type"] != "text":
            continue
        text = node["text"]
        marks = _marks(node)
        if "code" in marks:
            text = f"`{text}`"
        if "bold" in marks:
            text = f"**{text}**"
        if "italic" in marks:
            text = f"*{text}*"
        if "strike" in marks:
            text = f"~~{text}~~"
        if "link" in marks:
            text = f"[{text}]({marks['link'].get('href', '')})"
        out.append(text)
    return "".join(out)


def to_markdown(doc: dict[str, Any]) -> str:
    blocks = [_block_md(node, "") for node in doc.get("content", [])]
    return "\n\n".join(block for block in blocks if block is not None).strip() + "\n"


def _block_md(node: dict[str, Any], indent: str) -> str:
    kind = node["type"]
    content = node.get("content", [])
    attrs = node.get("attrs", {})
    if kind == "paragraph":
        return indent + _inline_md(content)
    if kind == "heading":
        return indent + "#" * int(attrs.get("level", 1)) + " " + _inline_md(content)
    if kind == "codeBlock" and attrs.get("language") == TABLE_LANGUAGE:
        # An imported table: written back as the table it was.
        code = "".join(child.get("text", "") for child in content)
        return "\n".join(indent + line for line in code.split("\n"))
    if kind == "codeBlock":
        code = "".join(child.get("text", "") for child in content)
        fence = indent + "```" + str(attrs.get("language") or "")
        return f"{fence}\n" + "\n".join(indent + line for line in code.split("\n")) + f"\n{indent}```"
    if kind == "blockquote":
        inner = "\n\n".join(_block_md(child, "") for child in content)
        return "\n".join(indent + "> " + line if line else indent + ">" for line in inner.split("\n"))
    if kind == "horizontalRule":
        return indent + "---"
    if kind in {"bulletList", "orderedList"}:
        lines = []
        start = int(attrs.get("start", 1) or 1)
        for number, item in enumerate(content, start=start):
            marker = "- " if kind == "bulletList" else f"{number}. "
            children = item.get("content", [])
            first, rest = (children[0], children[1:]) if children else ({"type": "paragraph"}, [])
            lines.append(indent + marker + _block_md(first, "").lstrip())
            for child in rest:
                lines.append(_block_md(child, indent + " " * len(marker)))
        return "\n".join(lines)
    return indent + _inline_md(content)


def _inline_html(nodes: list[dict[str, Any]]) -> str:
    out = []
    for node in nodes:
        if node["type"] == "hardBreak":
            out.append("<br>")
            continue
        if node["type"] != "text":
            continue
        text = html.escape(node["text"])
        marks = _marks(node)
        for name, tag in (("code", "code"), ("bold", "strong"), ("italic", "em"), ("strike", "s")):
            if name in marks:
                text = f"<{tag}>{text}</{tag}>"
        if "link" in marks:
            href = str(marks["link"].get("href", ""))
            if not href.lower().startswith(("http://", "https://", "mailto:", "/", "#")):
                href = "#"  # never export javascript: or data: links
            text = f'<a href="{html.escape(href)}">{text}</a>'
        out.append(text)
    return "".join(out)


def to_html(doc: dict[str, Any], title: str = "") -> str:
    body = "\n".join(_block_html(node) for node in doc.get("content", []))
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>\n<body>\n{body}\n</body></html>\n"
    )


def _block_html(node: dict[str, Any]) -> str:
    kind = node["type"]
    content = node.get("content", [])
    attrs = node.get("attrs", {})
    if kind == "paragraph":
        return f"<p>{_inline_html(content)}</p>"
    if kind == "heading":
        level = min(max(int(attrs.get("level", 1)), 1), 6)
        return f"<h{level}>{_inline_html(content)}</h{level}>"
    if kind == "codeBlock" and attrs.get("language") == TABLE_LANGUAGE:
        return _table_html("".join(child.get("text", "") for child in content))
    if kind == "codeBlock":
        return "<pre><code>" + html.escape("".join(child.get("text", "") for child in content)) + "</code></pre>"
    if kind == "blockquote":
        return "<blockquote>" + "".join(_block_html(child) for child in content) + "</blockquote>"
    if kind == "horizontalRule":
        return "<hr>"
    if kind in {"bulletList", "orderedList"}:
        tag = "ul" if kind == "bulletList" else "ol"
        items = "".join("<li>" + "".join(_block_html(c) for c in item.get("content", [])) + "</li>" for item in content)
        return f"<{tag}>{items}</{tag}>"
    return f"<p>{_inline_html(content)}</p>"


# --- Markdown -> Yjs XML ------------------------------------------------------------------------

_BLOCK_TAGS = {
    "paragraph_open": "paragraph",
    "heading_open": "heading",
    "bullet_list_open": "bulletList",
    "ordered_list_open": "orderedList",
    "list_item_open": "listItem",
    "blockquote_open": "blockquote",
}


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["strikethrough", "table"])


def markdown_title(source: str) -> str | None:
    """The text of the first level-1 heading (`# Title` or `Title` underlined with `===`), if any."""
    tokens = _parser().parse(source)
    for token, following in itertools.pairwise(tokens):
        if token.type == "heading_open" and token.tag == "h1" and following.type == "inline":
            text = "".join(child.content for child in following.children or [] if child.type in {"text", "code_inline"})
            title = " ".join(text.split())[:200]
            if title:
                return title
    return None


def markdown_into(fragment: XmlFragment, source: str) -> None:
    """Append the Markdown `source` to `fragment` as Tiptap nodes (the fragment must be in a Doc)."""
    tokens = _parser().parse(source)
    stack: list[Any] = [fragment]
    index = 0
    while index < len(tokens):
        token = tokens[index]
        parent = stack[-1]
        index += 1
        if token.type == "table_open":
            rows, index = _table_rows(tokens, index)
            element = parent.children.append(XmlElement("codeBlock"))
            element.attributes["language"] = TABLE_LANGUAGE
            text = element.children.append(XmlText())
            text.insert(0, _table_text(rows))
        elif token.type in _BLOCK_TAGS:
            element = parent.children.append(XmlElement(_BLOCK_TAGS[token.type]))
            if token.type == "heading_open":
                element.attributes["level"] = int(token.tag[1])
            if token.type == "ordered_list_open" and token.attrGet("start"):
                element.attributes["start"] = int(str(token.attrGet("start")))
            stack.append(element)
        elif token.type.endswith("_close"):
            if len(stack) > 1:
                stack.pop()
        elif token.type in {"fence", "code_block"}:
            element = parent.children.append(XmlElement("codeBlock"))
            if token.info:
                element.attributes["language"] = token.info.strip()
            text = element.children.append(XmlText())
            text.insert(0, token.content.rstrip("\n"))
        elif token.type == "hr":
            parent.children.append(XmlElement("horizontalRule"))
        elif token.type == "inline":
            _inline_into(parent, token.children or [])


# --- Tables -----------------------------------------------------------------------------------
#
# The editor (Tiptap's StarterKit) has no table nodes, so an imported table becomes a code block
# with language "table" holding the table re-aligned in monospace: readable and editable in the
# editor, and exported back as a Markdown table (and as an HTML <table>).

TABLE_LANGUAGE = "table"
_ALIGN = {"text-align:left": "left", "text-align:center": "center", "text-align:right": "right"}


@dataclass
class _Cell:
    text: str
    align: str | None


def _table_rows(tokens: list[Any], index: int) -> tuple[list[list[_Cell]], int]:
    """The rows (header first) of the table whose `table_open` precedes `index`, and the index after it."""
    rows: list[list[_Cell]] = []
    align: str | None = None
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.type == "table_close":
            break
        if token.type == "tr_open":
            rows.append([])
        elif token.type in {"th_open", "td_open"}:
            align = _ALIGN.get(str(token.attrGet("style") or ""))
        elif token.type == "inline" and rows:
            # The cell's own Markdown, with its pipes escaped again so the table still parses.
            rows[-1].append(_Cell(token.content.strip().replace("|", "\\|"), align))
    return rows, index


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _table_text(rows: list[list[_Cell]]) -> str:
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    rows = [row + [_Cell("", None)] * (columns - len(row)) for row in rows]
    widths = [max(3, *(_width(row[col].text) for row in rows)) for col in range(columns)]
    aligns = [rows[0][col].align for col in range(columns)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    def pad(cell: _Cell, width: int, align: str | None) -> str:
        space = width - _width(cell.text)
        if align == "right":
            return " " * space + cell.text
        if align == "center":
            return " " * (space // 2) + cell.text + " " * (space - space // 2)
        return cell.text + " " * space

    rule = []
    for width, align in zip(widths, aligns, strict=True):
        left = ":" if align in {"left", "center"} else "-"
        right = ":" if align in {"right", "center"} else "-"
        rule.append(left + "-" * (width - 2) + right)
    body = [line([pad(cell, widths[col], aligns[col]) for col, cell in enumerate(row)]) for row in rows]
    return "\n".join([body[0], line(rule), *body[1:]])


def _table_html(text: str) -> str:
    # Raw HTML and images stay off: the export must not carry markup the editor never showed,
    # and markdown-it's link check already refuses javascript: and data: links.
    renderer = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"]).disable("image")
    return str(renderer.render(text)).strip()


_CLOSING_MARKS = {"strong_close": "bold", "em_close": "italic", "s_close": "strike", "link_close": "link"}


def _inline_into(element: Any, tokens: list[Any]) -> None:
    text = element.children.append(XmlText())
    marks: dict[str, Any] = {}
    index = 0
    for token in tokens:
        kind = token.type
        if kind in {"text", "code_inline"}:
            attrs = dict(marks)
            if kind == "code_inline":
                attrs["code"] = {}
            if token.content:
                text.insert(index, token.content, attrs or None)
                index += len(token.content)
        elif kind in {"softbreak"}:
            text.insert(index, " ", dict(marks) or None)
            index += 1
        elif kind == "hardbreak":
            # Tiptap's hardBreak is a node between text runs.
            element.children.append(XmlElement("hardBreak"))
            text = element.children.append(XmlText())
            index = 0
        elif kind == "strong_open":
            marks["bold"] = {}
        elif kind == "em_open":
            marks["italic"] = {}
        elif kind == "s_open":
            marks["strike"] = {}
        elif kind == "link_open":
            marks["link"] = {"href": str(token.attrGet("href") or "")}
        elif kind.endswith("_close"):
            marks.pop(
                {"strong_close": "bold", "em_close": "italic", "s_close": "strike", "link_close": "link"}.get(kind, ""),
                None,
            )
