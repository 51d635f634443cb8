"""Hostile input on /ws/docs/<id> (issue 12): spoofed presence, schema-breaking updates, dangling
updates, floods. Each test drives the real ASGI application through WebSocket connections."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText, write_var_uint

from collab import protocol, relay, rooms, services
from collab.conf import LIMITS
from collab.models import DocumentUpdate
from policies.services import share_grant
from tests.collab.yclient import YClient, awareness_states, connect

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SCOPES = "docs:read docs:write"


@pytest.fixture
def setup(alice: Any, bob: Any, make_user: Callable[..., Any], mint_token: Callable[..., str]) -> dict[str, Any]:
    carol = make_user("carol")
    document = services.document_create(owner=alice, title="Plan")
    share_grant(resource_type="Document", resource_id=document.pk, role="editor", user=bob)
    share_grant(resource_type="Document", resource_id=document.pk, role="viewer", user=carol)
    return {
        "doc": document.pk,
        "alice": mint_token("alice", SCOPES),
        "bob": mint_token("bob", SCOPES),
        "carol": mint_token("carol", SCOPES),
        "alice_user": alice,
        "bob_user": bob,
        "carol_user": carol,
    }


def encode_entries(entries: list[tuple[int, int, Any]]) -> bytes:
    """An awareness update, encoded here (not by the code under test): (client id, clock, state)."""
    out = write_var_uint(len(entries))
    for client_id, clock, state in entries:
        raw = json.dumps(state).encode()
        out += write_var_uint(client_id) + write_var_uint(clock) + write_var_uint(len(raw)) + raw
    return out


def spoof(client_id: int, state: dict[str, Any] | None, clock: int = 1000) -> bytes:
    return protocol.awareness(encode_entries([(client_id, clock, state)]))


async def quiet(*clients: YClient) -> None:
    for client in clients:
        await client.pump(wait=0.3)


# --- awareness -------------------------------------------------------------------------------


async def test_a_viewer_cannot_set_or_remove_someone_elses_presence(setup: dict[str, Any]) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    bob = await connect(setup["doc"], setup["bob"])
    carol = await connect(setup["doc"], setup["carol"])  # a viewer
    await bob.announce({"user": {"name": "bob", "color": "#1b998b"}, "cursor": None})
    await alice.pump(until=lambda: bob.doc.client_id in alice.presence(), wait=2)
    await carol.pump(until=lambda: bob.doc.client_id in carol.presence(), wait=2)

    await carol.send(spoof(bob.doc.client_id, {"user": {"name": "bob (spoofed by carol)"}}))
    await carol.send(spoof(bob.doc.client_id, None))
    await quiet(alice, carol)
    assert carol.closed_code is None  # dropped, not an error: the rest of the socket's traffic goes on
    bob_state = alice.presence()[bob.doc.client_id]
    assert bob_state["user"] == {"name": "bob", "id": setup["bob_user"].pk, "color": "#1b998b"}

    # The spoofer leaves: the victim's presence stays.
    await carol.close()
    await quiet(alice)
    assert bob.doc.client_id in alice.presence()
    late = await connect(setup["doc"], setup["alice"])
    await late.send(protocol.query_awareness())
    await late.pump(until=lambda: bob.doc.client_id in late.presence(), wait=2)
    for client in (alice, bob, late):
        await client.close()


async def test_the_server_writes_the_user_field_and_viewers_publish_their_own_presence(setup: dict[str, Any]) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    carol = await connect(setup["doc"], setup["carol"])
    await carol.announce({"user": {"name": "admin", "id": 1, "color": "red;background:url(x)"}, "cursor": {"a": 1}})
    await alice.pump(until=lambda: carol.doc.client_id in alice.presence(), wait=2)
    state = alice.presence()[carol.doc.client_id]
    assert state == {"user": {"name": "carol", "id": setup["carol_user"].pk}, "cursor": {"a": 1}}
    # The stock client re-sends its state (every 15 s, or when the caret moves): still accepted.
    await carol.announce({"user": {"name": "carol", "color": "#f46036"}, "cursor": {"a": 2}})
    await alice.pump(until=lambda: alice.presence()[carol.doc.client_id]["cursor"] == {"a": 2}, wait=2)
    assert alice.presence()[carol.doc.client_id]["user"]["color"] == "#f46036"
    # Its own removal is honoured.
    await carol.announce(None)
    await alice.pump(until=lambda: carol.doc.client_id not in alice.presence(), wait=2)
    await alice.close()
    await carol.close()


async def test_a_client_id_already_owned_by_another_socket_is_refused(setup: dict[str, Any]) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    bob = await connect(setup["doc"], setup["bob"])
    await bob.announce({"user": {"name": "bob"}})
    await alice.pump(until=lambda: bob.doc.client_id in alice.presence(), wait=2)
    # Another socket of the same user does not get bob's client id either.
    bob_again = await connect(setup["doc"], setup["bob"])
    await bob_again.send(spoof(bob.doc.client_id, {"user": {"name": "bob"}, "cursor": "elsewhere"}))
    await bob_again.close()
    await quiet(alice)
    assert alice.presence()[bob.doc.client_id] == {"user": {"name": "bob", "id": setup["bob_user"].pk}}
    await alice.close()
    await bob.close()


async def test_a_client_id_owned_in_another_process_is_refused(setup: dict[str, Any]) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    remote_id = 424242
    # What another process relays on the bus after its socket announced `remote_id`.
    payload = encode_entries([(remote_id, 3, {"user": {"name": "dave", "id": 9}})])
    await rooms._on_relay(str(setup["doc"]), relay.encode(relay.AWARENESS, "p" * 16, payload))
    await alice.pump(until=lambda: remote_id in alice.presence(), wait=2)
    carol = await connect(setup["doc"], setup["carol"])
    await carol.send(spoof(remote_id, {"user": {"name": "dave"}, "cursor": "hijacked"}))
    await carol.send(spoof(remote_id, None, clock=99))
    await quiet(alice, carol)
    assert alice.presence()[remote_id] == {"user": {"name": "dave", "id": 9}}
    await alice.close()
    await carol.close()


async def test_a_socket_introduces_only_a_few_client_ids(setup: dict[str, Any]) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    carol = await connect(setup["doc"], setup["carol"])
    await carol.send(protocol.awareness(encode_entries([(1000 + n, 1, {"cursor": n}) for n in range(50)])))
    await quiet(alice)
    assert len([cid for cid in alice.presence() if 1000 <= cid < 1050]) == 4  # rooms.MAX_CLIENT_IDS_PER_SOCKET
    await carol.close()
    await alice.pump(until=lambda: not any(1000 <= cid < 1050 for cid in alice.presence()), wait=2)
    await alice.close()


@pytest.mark.parametrize(
    "state",
    [b"{not json", b"[1, 2]", b'"a string"', b'{"n": NaN}', b'{"name": "\\ud800"}'],
)
async def test_a_malformed_awareness_state_closes_with_4400(setup: dict[str, Any], state: bytes) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    carol = await connect(setup["doc"], setup["carol"])
    payload = b"\x01" + write_var_uint(carol.doc.client_id) + b"\x01"
    payload += write_var_uint(len(state)) + state
    alice.awareness_frames.clear()
    await carol.send(protocol.awareness(payload))
    await carol.pump(wait=1)
    assert carol.closed_code == protocol.CLOSE_INVALID
    await quiet(alice)
    assert all(cid != carol.doc.client_id for frame in alice.awareness_frames for cid, _ in awareness_states(frame))
    await alice.close()


async def test_awareness_of_a_viewer_stores_nothing(setup: dict[str, Any]) -> None:
    carol = await connect(setup["doc"], setup["carol"])
    await carol.announce({"user": {"name": "carol"}})
    await quiet(carol)
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 0
    assert carol.closed_code is None
    await carol.close()


# --- document content rules ------------------------------------------------------------------


def paragraph_update(doc: Doc[Any], text: str) -> bytes:
    """What the editor sends: a paragraph appended to the `default` XmlFragment."""
    before = doc.get_state()
    doc.get("default", type=XmlFragment).children.append(XmlElement("paragraph", {}, [XmlText(text)]))
    return doc.get_update(before)


def root_update(kind: str) -> bytes:
    doc: Doc[Any] = Doc()
    if kind == "Text":
        doc.get("default", type=Text).insert(0, "x")
    elif kind == "Map":
        doc.get("default", type=Map)["x"] = 1
    elif kind == "Array":
        doc.get("default", type=Array).append(1)
    elif kind == "XmlText":
        doc.get("default", type=XmlFragment).children.append(XmlText("loose text"))
    return doc.get_update()


async def exports(document_id: int, token: str) -> tuple[str, dict[str, Any]]:
    def fetch() -> tuple[str, dict[str, Any]]:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        md = client.get(f"/api/documents/{document_id}/export/md/")
        js = client.get(f"/api/documents/{document_id}/export/json/")
        assert md.status_code == 200 and js.status_code == 200
        return md.content.decode(), js.json()

    return await sync_to_async(fetch)()


@pytest.mark.parametrize("kind", ["Text", "Map", "Array", "XmlText"])
async def test_an_update_writing_the_root_as_another_type_is_refused_and_not_stored(
    setup: dict[str, Any], kind: str
) -> None:
    bob = await connect(setup["doc"], setup["bob"])
    await bob.send(protocol.sync_update(paragraph_update(bob.doc, "Hello")))
    await quiet(bob)
    stored = await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount()
    assert stored == 1
    alice = await connect(setup["doc"], setup["alice"])
    update = root_update(kind)
    await bob.send(protocol.sync_update(update))
    await bob.pump(wait=1)
    assert bob.closed_code == protocol.CLOSE_INVALID, (kind, len(update))
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == stored
    assert await alice.communicator.receive_nothing(timeout=0.3)
    markdown, document_json = await exports(setup["doc"], setup["alice"])
    assert markdown.strip() == "Hello"
    assert document_json["content"] == [{"type": "paragraph", "content": [{"type": "text", "text": "Hello"}]}]
    # The room is unharmed: the editor's next edit (after reconnecting) is stored and exported.
    again = await connect(setup["doc"], setup["bob"])
    await again.send(protocol.sync_update(paragraph_update(again.doc, "World")))
    await alice.pump(until=lambda: "World" in str(alice.doc.get("default", type=XmlFragment)), wait=2)
    markdown, _ = await exports(setup["doc"], setup["alice"])
    assert markdown.split() == ["Hello", "World"]
    await alice.close()
    await again.close()


async def test_an_update_with_missing_dependencies_is_refused_and_not_stored(setup: dict[str, Any]) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    bob = await connect(setup["doc"], setup["bob"])
    offline: Doc[Any] = Doc()
    first = paragraph_update(offline, "first")
    second = paragraph_update(offline, "second")  # built on `first`, which the server never got
    await bob.send(protocol.sync_update(second))
    await bob.pump(wait=1)
    assert bob.closed_code == protocol.CLOSE_RESYNC
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 0
    # A deletion of something the document never had: refused too.
    deleter = await connect(setup["doc"], setup["bob"])
    before = offline.get_state()
    del offline.get("default", type=XmlFragment).children[0]
    await deleter.send(protocol.sync_update(offline.get_update(before)))
    await deleter.pump(wait=1)
    assert deleter.closed_code == protocol.CLOSE_RESYNC
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 0
    # Nothing of them lingers in the room: when `first` arrives, only `first` is there.
    writer = await connect(setup["doc"], setup["bob"])
    await writer.send(protocol.sync_update(first))
    await alice.pump(until=lambda: "first" in str(alice.doc.get("default", type=XmlFragment)), wait=2)
    await quiet(alice)
    assert str(alice.doc.get("default", type=XmlFragment)) == "<paragraph>first</paragraph>"
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 1
    markdown, _ = await exports(setup["doc"], setup["alice"])
    assert markdown.strip() == "first"
    # The whole difference, as a reconnecting client sends it, is accepted.
    await writer.send(protocol.sync_update(offline.get_update()))
    await alice.pump(until=lambda: "second" in str(alice.doc.get("default", type=XmlFragment)), wait=2)
    for client in (alice, writer):
        await client.close()


async def test_a_flood_from_one_editor_is_cut_off_and_others_keep_editing(setup: dict[str, Any]) -> None:
    alice = await connect(setup["doc"], setup["alice"])
    carol = await connect(setup["doc"], setup["carol"])
    flooder = await connect(setup["doc"], setup["bob"])
    loop = asyncio.get_running_loop()
    for n in range(2000):
        await flooder.send(protocol.sync_update(paragraph_update(flooder.doc, str(n % 10))))
    started = loop.time()
    await alice.send(protocol.sync_update(paragraph_update(alice.doc, "alice still here")))
    await carol.pump(until=lambda: "alice still here" in str(carol.doc.get("default", type=XmlFragment)), wait=5)
    assert loop.time() - started < 2.0
    await flooder.pump(until=lambda: flooder.closed_code is not None, wait=5)
    assert flooder.closed_code == protocol.CLOSE_RATE_LIMITED
    flooded = await DocumentUpdate.objects.filter(document_id=setup["doc"], user=setup["bob_user"]).acount()
    assert 0 < flooded <= 60  # the default per-editor policy: 60/second
    for client in (alice, carol):
        await client.close()


async def test_the_edit_size_budget_refuses_an_editor_beyond_it(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LIMITS, "edit_bytes_per_minute", 4096)
    bob = await connect(setup["doc"], setup["bob"])
    alice = await connect(setup["doc"], setup["alice"])
    await bob.send(protocol.sync_update(paragraph_update(bob.doc, "b" * 3000)))
    await quiet(bob)
    assert bob.closed_code is None
    await bob.send(protocol.sync_update(paragraph_update(bob.doc, "b" * 3000)))
    await bob.pump(wait=1)
    assert bob.closed_code == protocol.CLOSE_RATE_LIMITED
    # Another editor has a budget of its own.
    await alice.send(protocol.sync_update(paragraph_update(alice.doc, "a" * 3000)))
    await quiet(alice)
    assert alice.closed_code is None
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 2
    await alice.close()
