"""Against real Daphne processes: large first syncs, and two processes sharing a document through Redis."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from pycrdt import Text, XmlFragment

from collab import services
from collab.protocol import awareness, sync_step1
from tests.collab.yclient import RawClient
from tests.conftest import LiveServer

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


async def join(server: LiveServer, document_id: int, token: str) -> RawClient:
    socket = await websockets.connect(
        f"{server.ws_url}/ws/docs/{document_id}",
        additional_headers={"Authorization": f"Bearer {token}"},
        max_size=None,
    )
    client = RawClient(socket)
    await socket.send(sync_step1(client.doc.get_state()))
    await client.run_until(lambda: client.synced)
    return client


async def test_a_first_sync_larger_than_daphnes_default_1_mib_goes_through(
    live_server_factory: Callable[..., LiveServer], alice: Any, mint_token: Callable[..., str]
) -> None:
    """Daphne caps messages at 1 MiB unless told otherwise; a large document's first sync is one message."""
    big = "lorem ipsum " * 150_000  # 1.8 MB of text

    def fill(fragment: XmlFragment) -> None:
        doc = fragment.doc
        doc.get("t", type=Text).insert(0, big)

    document = await sync_to_async(services.document_create)(owner=alice, title="Big", initial=fill)
    token = await sync_to_async(mint_token)("alice", "docs:read docs:write")
    server = await sync_to_async(live_server_factory)()
    client = await join(server, document.pk, token)
    assert len(str(client.text)) == len(big)
    await client.socket.close()
    server.stop()


@pytest.mark.services
async def test_two_processes_share_a_document_through_redis(
    live_server_factory: Callable[..., LiveServer], alice: Any, mint_token: Callable[..., str]
) -> None:
    document = await sync_to_async(services.document_create)(owner=alice, title="Shared")
    token = await sync_to_async(mint_token)("alice", "docs:read docs:write")
    first, second = await sync_to_async(live_server_factory)(), await sync_to_async(live_server_factory)()
    a = await join(first, document.pk, token)
    b = await join(second, document.pk, token)
    await a.insert("from process one")
    await b.run_until(lambda: str(b.text) == "from process one")
    await b.insert(", and two")
    await a.run_until(lambda: str(a.text) == "from process one, and two")
    # presence crosses processes too
    b.awareness.set_local_state({"user": {"name": "bee"}})
    await b.socket.send(awareness(b.awareness.encode_awareness_update([b.doc.client_id])))
    # (under the authenticated user's name: the server writes `user`)
    await a.run_until(lambda: a.awareness.states.get(b.doc.client_id, {}).get("user", {}).get("name") == "alice")
    # ...and so does ownership: process one refuses a's claim on b's client id (owned in process two).
    spoofed = {"user": {"name": "spoof"}}
    a.awareness.set_local_state(spoofed)
    a.awareness._states[b.doc.client_id] = spoofed
    a.awareness._meta[b.doc.client_id] = {"clock": 1000, "lastUpdated": 0}
    await a.socket.send(awareness(a.awareness.encode_awareness_update([b.doc.client_id])))
    await a.insert(" (barrier)")  # relayed after whatever process one made of the spoof
    await b.run_until(lambda: str(b.text).endswith("(barrier)"))
    assert b.awareness.states[b.doc.client_id]["user"]["name"] != "spoof"
    for client in (a, b):
        await client.socket.close()
    first.stop()
    second.stop()
