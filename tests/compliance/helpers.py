"""Shared pieces of the compliance tests: keys, a pycrdt editor typing into the Tiptap fragment."""

from __future__ import annotations

import asyncio
from typing import Any

import websockets
from pycrdt import Doc, XmlElement, XmlFragment, XmlText

from collab import protocol
from webconnect.encryption import generate_key

FRAGMENT = "default"  # what Tiptap's Collaboration extension edits (collab.services.FRAGMENT)


def new_keys(*ids: str) -> str:
    return ",".join(f"{key_id}:{generate_key()}" for key_id in ids)


async def type_paragraph(ws_url: str, document_id: int, token: str, text: str) -> None:
    """Connect as a y-websocket client, sync, and type `text` as a new paragraph (what the editor sends)."""
    async with websockets.connect(
        f"{ws_url}/ws/docs/{document_id}", additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        doc: Doc[Any] = Doc()
        await ws.send(protocol.sync_step1(doc.get_state()))
        async with asyncio.timeout(15):
            while True:
                message = protocol.parse(await ws.recv())
                if isinstance(message, protocol.SyncStep1):
                    await ws.send(protocol.sync_step2(doc.get_update(message.state_vector)))
                elif isinstance(message, protocol.SyncStep2):
                    doc.apply_update(message.update)
                    break
                elif isinstance(message, protocol.SyncUpdate):
                    doc.apply_update(message.update)
        before = doc.get_state()
        fragment = doc.get(FRAGMENT, type=XmlFragment)
        paragraph = fragment.children.append(XmlElement("paragraph"))
        paragraph.children.append(XmlText(text))
        await ws.send(protocol.sync_update(doc.get_update(before)))
        # The server relays an update only after committing it: a second client seeing it = stored.
    await read_text(ws_url, document_id, token, until=text)


async def read_text(ws_url: str, document_id: int, token: str, *, until: str | None = None) -> str:
    """What a fresh editor (the page's, or any y-websocket client) sees: the fragment's text after sync."""
    async with asyncio.timeout(20):
        while True:
            async with websockets.connect(
                f"{ws_url}/ws/docs/{document_id}",
                additional_headers={"Authorization": f"Bearer {token}"},
                max_size=None,
            ) as ws:
                doc: Doc[Any] = Doc()
                await ws.send(protocol.sync_step1(doc.get_state()))
                while True:
                    message = protocol.parse(await ws.recv())
                    if isinstance(message, protocol.SyncStep2):
                        doc.apply_update(message.update)
                        break
                    if isinstance(message, protocol.SyncStep1):
                        await ws.send(protocol.sync_step2(doc.get_update(message.state_vector)))
                text = str(doc.get(FRAGMENT, type=XmlFragment))
            if until is None or until in text:
                return text
            await asyncio.sleep(0.2)
