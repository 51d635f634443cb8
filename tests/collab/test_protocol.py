"""The y-websocket endpoint with pycrdt clients over real ASGI connections."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from pycrdt import Channel, Doc, Provider, Text

from collab import protocol, services
from collab.conf import LIMITS
from collab.models import Document, DocumentUpdate
from policies.models import ShareGrant
from policies.services import share_grant, share_grant_delete
from tests.collab.yclient import YClient, awareness_states, connect

# serialized_rollback: the default policy set (migration data) survives the flush between tests.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SCOPES = "docs:read docs:write"


@pytest.fixture
def setup(alice: Any, bob: Any, make_user: Callable[..., Any], mint_token: Callable[..., str]) -> dict[str, Any]:
    make_user("carol")
    document = services.document_create(owner=alice, title="Plan")
    return {
        "doc": document.pk,
        "document": document,
        "alice": mint_token("alice", SCOPES),
        "bob": mint_token("bob", SCOPES),
        "carol": mint_token("carol", SCOPES),
        "bob_user": bob,
    }


def text_of(client: YClient) -> str:
    return str(client.text)


async def test_two_clients_sync_and_relay(setup: dict[str, Any]) -> None:
    a = await connect(setup["doc"], setup["alice"])
    assert a.synced
    await a.edit("hello")
    b = await connect(setup["doc"], setup["alice"])
    await b.pump(until=lambda: text_of(b) == "hello", wait=2)
    await b.edit(" world")
    await a.pump(until=lambda: text_of(a) == "hello world", wait=2)
    await a.close()
    await b.close()


async def test_bursts_from_several_editors_reach_every_other_editor_and_never_come_back(
    setup: dict[str, Any],
) -> None:
    # Group commit sends each socket one merged update per batch: every edit must still arrive,
    # and a sender must never get its own edits back.
    a = await connect(setup["doc"], setup["alice"])
    b = await connect(setup["doc"], setup["alice"])
    c = await connect(setup["doc"], setup["alice"])
    # 50 edits in all: within the default limit for one user on one document (60/s).
    for _ in range(20):  # back to back, nobody reading: the updates pile up into batches
        await a.edit("a")
        await b.edit("b")
    for client in (a, b, c):
        await client.pump(until=lambda client=client: len(text_of(client)) == 40, wait=5)
    assert text_of(a) == text_of(b) == text_of(c)
    assert sorted(text_of(c)) == sorted("ab" * 20)

    for _ in range(10):
        await a.edit("x")
    await b.pump(until=lambda: len(text_of(b)) == 50, wait=5)
    await c.pump(until=lambda: len(text_of(c)) == 50, wait=5)
    assert await a.communicator.receive_nothing(timeout=0.3)  # its own 10 edits: not echoed

    stored = services.load_doc(await sync_to_async(services.document_state)(document_id=setup["doc"]))
    assert str(stored.get("t", type=Text)) == text_of(b)
    assert await sync_to_async(DocumentUpdate.objects.filter(document_id=setup["doc"]).count)() == 50
    for client in (a, b, c):
        await client.close()


async def test_sync_replies_only_to_the_asking_socket(setup: dict[str, Any]) -> None:
    a = await connect(setup["doc"], setup["alice"])
    b = await connect(setup["doc"], setup["alice"])
    await a.pump(wait=0.3)
    await b.send(protocol.sync_step1(b.doc.get_state()))
    await b.pump(wait=0.3)
    # a received nothing about b's sync (no relayed step 1 or step 2)
    assert await a.communicator.receive_nothing(timeout=0.3)
    await a.close()
    await b.close()


async def test_a_late_joiner_after_everyone_left_sees_the_content(setup: dict[str, Any]) -> None:
    a = await connect(setup["doc"], setup["alice"])
    await a.edit("persisted")
    await a.pump(wait=0.3)
    await a.close()
    late = await connect(setup["doc"], setup["alice"])
    await late.pump(until=lambda: text_of(late) == "persisted", wait=2)
    await late.close()


async def test_compaction_after_the_last_editor_leaves_keeps_the_content(setup: dict[str, Any]) -> None:
    a = await connect(setup["doc"], setup["alice"])
    for word in ["one ", "two ", "three"]:
        await a.edit(word)
    await a.pump(wait=0.3)
    await a.close()
    # The eager Celery task ran on leave: the log is folded into the snapshot.
    document = await Document.objects.aget(pk=setup["doc"])
    assert document.snapshot_seq > 0
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 0
    assert await sync_to_async(services.document_compact)(document_id=setup["doc"]) is False  # idempotent
    doc: Doc[Any] = Doc()
    doc.apply_update(bytes(document.snapshot))
    assert str(doc.get("t", type=Text)) == "one two three"


async def test_awareness_is_relayed_answered_on_query_and_removed_on_close(setup: dict[str, Any]) -> None:
    a = await connect(setup["doc"], setup["alice"])
    b = await connect(setup["doc"], setup["alice"])
    await a.announce({"user": {"name": "alice", "color": "#f00"}})
    await b.pump(until=lambda: a.doc.client_id in b.presence(), wait=2)
    # a third client asks explicitly
    c = await connect(setup["doc"], setup["alice"])
    c.awareness_frames.clear()
    await c.send(protocol.query_awareness())
    await c.pump(until=lambda: bool(c.awareness_frames), wait=2)
    # The server writes the user's name and id (the colour is the client's).
    alice_state = {"user": {"name": "alice", "id": setup["document"].owner_id, "color": "#f00"}}
    assert (a.doc.client_id, alice_state) in awareness_states(c.awareness_frames[-1])
    b.awareness_frames.clear()
    await a.close()
    await b.pump(until=lambda: a.doc.client_id not in b.presence(), wait=2)
    assert (a.doc.client_id, None) in awareness_states(b.awareness_frames[-1])
    await b.close()
    await c.close()


async def test_a_viewer_receives_updates_but_its_own_are_dropped(setup: dict[str, Any]) -> None:
    await sync_to_async(share_grant)(
        resource_type="Document", resource_id=setup["doc"], role="viewer", user=setup["bob_user"]
    )
    owner = await connect(setup["doc"], setup["alice"])
    viewer = await connect(setup["doc"], setup["bob"])
    assert viewer.synced and viewer.closed_code is None
    await viewer.edit("sneaky")
    await owner.edit("legit")
    await viewer.pump(until=lambda: "legit" in text_of(viewer), wait=2)
    await owner.pump(wait=0.3)
    assert text_of(owner) == "legit"
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"], user=setup["bob_user"]).acount() == 0
    await owner.close()
    await viewer.close()


async def test_an_outsider_gets_permission_denied_and_a_closed_socket(setup: dict[str, Any]) -> None:
    outsider = await connect(setup["doc"], setup["carol"])
    assert outsider.denied
    assert outsider.closed_code == protocol.CLOSE_FORBIDDEN


async def test_an_anonymous_socket_and_a_missing_document_are_denied(setup: dict[str, Any]) -> None:
    anonymous = await connect(setup["doc"], None)
    assert anonymous.denied and anonymous.closed_code == protocol.CLOSE_FORBIDDEN
    missing = await connect(999_999, setup["alice"])
    assert missing.denied == "document not found"


async def test_a_token_without_docs_scope_is_denied(setup: dict[str, Any], mint_token: Any) -> None:
    token = await sync_to_async(mint_token)("alice", "realtime:read")
    client = await connect(setup["doc"], token)
    assert client.denied and "scope" in client.denied


async def test_a_read_only_token_is_a_viewer(setup: dict[str, Any], mint_token: Any) -> None:
    token = await sync_to_async(mint_token)("alice", "docs:read")
    reader = await connect(setup["doc"], token)
    assert reader.synced
    await reader.edit("dropped")
    await reader.pump(wait=0.3)
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 0
    await reader.close()


async def test_a_corrupted_update_is_refused_never_stored_nor_relayed(setup: dict[str, Any]) -> None:
    a = await connect(setup["doc"], setup["alice"])
    b = await connect(setup["doc"], setup["alice"])
    stored_before = await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount()
    await a.send(protocol.sync_update(b"\x05\xff\xff\xff\x01garbage"))
    await a.pump(wait=1)
    assert a.closed_code == protocol.CLOSE_INVALID
    assert await b.communicator.receive_nothing(timeout=0.3)
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == stored_before
    # the server keeps serving the others
    await b.edit("still fine")
    await b.pump(wait=0.3)
    assert b.closed_code is None
    await b.close()


async def test_malformed_frames_are_refused(setup: dict[str, Any]) -> None:
    for frame in [b"\x09", b"\x00\x02\x10ab", b"\x00\x00\x01\x00trailing"]:
        client = await connect(setup["doc"], setup["alice"])
        await client.send(frame)
        await client.pump(wait=1)
        assert client.closed_code == protocol.CLOSE_INVALID, frame


async def test_an_oversized_update_is_refused(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LIMITS, "max_update_bytes", 1000)
    a = await connect(setup["doc"], setup["alice"])
    await a.edit("x" * 2000)
    await a.pump(wait=1)
    assert a.closed_code == protocol.CLOSE_TOO_LARGE
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 0


async def test_the_document_size_limit_refuses_growth(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LIMITS, "max_document_bytes", 1500)
    a = await connect(setup["doc"], setup["alice"])
    await a.edit("y" * 1000)
    await a.pump(wait=0.3)
    assert a.closed_code is None
    await a.edit("z" * 1000)
    await a.pump(wait=1)
    assert a.closed_code == protocol.CLOSE_TOO_LARGE


async def test_revoking_a_share_takes_effect_on_the_open_socket(setup: dict[str, Any]) -> None:
    share = await sync_to_async(share_grant)(
        resource_type="Document", resource_id=setup["doc"], role="editor", user=setup["bob_user"]
    )
    bob = await connect(setup["doc"], setup["bob"])
    assert bob.synced and bob.closed_code is None
    await sync_to_async(share_grant_delete)(grant=share)
    await bob.pump(wait=2, until=lambda: bob.closed_code is not None)
    assert bob.denied and bob.closed_code == protocol.CLOSE_FORBIDDEN


async def test_a_policy_change_rechecks_open_sockets(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from webconnect.kernel import sessions

    bob_share = await sync_to_async(share_grant)(
        resource_type="Document", resource_id=setup["doc"], role="editor", user=setup["bob_user"]
    )
    bob = await connect(setup["doc"], setup["bob"])
    # The share goes and the policy version moves behind this process's back (another
    # process saved it); then the kernel re-checks, as the policy poller would.
    from django.db.models import F

    from policies import engine
    from policies.models import PolicyState

    await ShareGrant.objects.filter(pk=bob_share.pk).adelete()
    await PolicyState.objects.filter(pk=1).aupdate(version=F("version") + 1)
    engine.mark_stale()
    await sessions.recheck_all_sessions()
    await bob.pump(wait=2, until=lambda: bob.closed_code is not None)
    assert bob.closed_code == protocol.CLOSE_FORBIDDEN


async def test_downgrading_an_editor_closes_the_socket_so_the_page_turns_read_only(setup: dict[str, Any]) -> None:
    await sync_to_async(share_grant)(
        resource_type="Document", resource_id=setup["doc"], role="editor", user=setup["bob_user"]
    )
    bob = await connect(setup["doc"], setup["bob"])
    await sync_to_async(share_grant)(
        resource_type="Document", resource_id=setup["doc"], role="viewer", user=setup["bob_user"]
    )
    await bob.pump(wait=2, until=lambda: bob.closed_code is not None)
    assert bob.closed_code == protocol.CLOSE_PERMISSIONS_CHANGED
    again = await connect(setup["doc"], setup["bob"])
    await again.edit("nope")
    await again.pump(wait=0.3)
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"], user=setup["bob_user"]).acount() == 0
    await again.close()


async def test_offline_edits_are_stored_before_the_server_answers_sync(setup: dict[str, Any]) -> None:
    """The provider's synced state means its pending edits are committed."""
    a = await connect(setup["doc"], setup["alice"], start=False)
    a.text.insert(0, "written offline")
    await a.start()
    await a.pump(wait=3, until=lambda: a.synced)
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 1
    await a.close()


class CommunicatorChannel:
    """pycrdt's Channel protocol over a WebsocketCommunicator, so pycrdt's own Provider connects."""

    def __init__(self, communicator: Any, path: str) -> None:
        self.communicator = communicator
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> CommunicatorChannel:
        return self

    async def __anext__(self) -> bytes:
        return await self.recv()

    async def send(self, message: bytes) -> None:
        await self.communicator.send_to(bytes_data=message)

    async def recv(self) -> bytes:
        output = await self.communicator.receive_output(timeout=30)
        if output["type"] == "websocket.close":
            raise StopAsyncIteration
        return bytes(output["bytes"])


async def test_pycrdts_own_provider_connects_unchanged(setup: dict[str, Any]) -> None:
    from channels.testing import WebsocketCommunicator

    from webconnect.asgi import application

    writer = await connect(setup["doc"], setup["alice"])
    await writer.edit("from a client")
    await writer.pump(wait=0.3)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/docs/{setup['doc']}",
        headers=[(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {setup['alice']}".encode())],
    )
    assert (await communicator.connect())[0]
    doc: Doc[Any] = Doc()
    channel: Channel = CommunicatorChannel(communicator, str(setup["doc"]))
    async with Provider(doc, channel):
        for _ in range(100):
            if str(doc.get("t", type=Text)) == "from a client":
                break
            await asyncio.sleep(0.05)
        assert str(doc.get("t", type=Text)) == "from a client"
        doc.get("t", type=Text).insert(0, ">> ")
        await writer.pump(until=lambda: text_of(writer) == ">> from a client", wait=3)
    await communicator.disconnect()
    await writer.close()


async def test_an_update_over_the_rate_limit_closes_with_a_transient_code(
    setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from webconnect import authorization

    seen: list[tuple[str, str]] = []

    async def limited(principal: Any, action: str, resource: Any) -> authorization.RateDecision:
        seen.append((action, resource.type))
        return authorization.RateDecision(False, retry_after=1.0, limit="1/second")

    monkeypatch.setattr(authorization, "_rate_check", limited)
    a = await connect(setup["doc"], setup["alice"])
    await a.edit("too fast")
    await a.pump(wait=1)
    assert a.closed_code == protocol.CLOSE_RATE_LIMITED and ("edit", "Document") in seen
    assert await DocumentUpdate.objects.filter(document_id=setup["doc"]).acount() == 0
