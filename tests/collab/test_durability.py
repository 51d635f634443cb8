"""Nothing acknowledged is lost: compaction under concurrent writers, and a killed web server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.db import connection
from pycrdt import Doc, Text

from collab import services
from collab.models import Document, DocumentUpdate, DocumentVersion
from collab.protocol import sync_step1
from tests.collab.yclient import RawClient
from tests.conftest import LiveServer

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def text_update(doc: Doc[Any], value: str) -> bytes:
    before = doc.get_state()
    text = doc.get("t", type=Text)
    text.insert(len(text), value)
    return doc.get_update(before)


def stored_text(document_id: int) -> str:
    return str(services.load_doc(services.document_state(document_id=document_id)).get("t", type=Text))


def test_compaction_is_idempotent_and_keeps_later_rows(alice: Any) -> None:
    document = services.document_create(owner=alice, title="Log")
    doc: Doc[Any] = Doc()
    services.document_append_updates(document_id=document.pk, updates=[(text_update(doc, "a"), alice.pk)])
    assert services.document_compact(document_id=document.pk) is True
    assert services.document_compact(document_id=document.pk) is False
    services.document_append_updates(document_id=document.pk, updates=[(text_update(doc, "b"), alice.pk)])
    assert DocumentUpdate.objects.filter(document=document).count() == 1
    assert stored_text(document.pk) == "ab"
    assert services.document_compact(document_id=document.pk) is True
    assert DocumentVersion.objects.filter(document=document, automatic=True).count() == 2
    assert stored_text(document.pk) == "ab"


def test_the_periodic_job_compacts_every_pending_document(alice: Any) -> None:
    from collab.jobs import compact_documents_job
    from webconnect.jobs.registry import JobContext

    doc: Doc[Any] = Doc()
    ids = []
    for title in ["one", "two"]:
        document = services.document_create(owner=alice, title=title)
        services.document_append_updates(document_id=document.pk, updates=[(text_update(doc, title), None)])
        ids.append(document.pk)
    dry = compact_documents_job(JobContext(dry_run=True, batch_size=100, params={}))
    assert dry.details["pending"] == 2 and dry.affected == 0
    result = compact_documents_job(JobContext(dry_run=False, batch_size=100, params={}))
    assert result.affected == 2 and not DocumentUpdate.objects.exists()


def test_concurrent_compactions_and_writers_lose_nothing(alice: Any) -> None:
    document = services.document_create(owner=alice, title="Busy")
    errors: list[BaseException] = []
    writer_doc: Doc[Any] = Doc()
    updates = [text_update(writer_doc, f"{i};") for i in range(60)]
    expected = str(writer_doc.get("t", type=Text))

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connection.close()

        return run

    def write() -> None:
        for update in updates:
            services.document_append_updates(document_id=document.pk, updates=[(update, alice.pk)])

    def compact() -> None:
        for _ in range(15):
            services.document_compact(document_id=document.pk)

    threads = [threading.Thread(target=guarded(write))] + [threading.Thread(target=guarded(compact)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    services.document_compact(document_id=document.pk)
    assert stored_text(document.pk) == expected
    document.refresh_from_db()
    assert not DocumentUpdate.objects.filter(document=document).exists() and document.snapshot_seq > 0


@pytest.mark.services
async def test_a_killed_web_server_loses_no_acknowledged_update(
    live_server_factory: Callable[..., LiveServer], alice: Any, mint_token: Callable[..., str]
) -> None:
    """Edits flow while the Daphne process is SIGKILLed and another one starts on the same stores.

    Acknowledged = relayed to an observer (the server relays only after the commit), or
    covered by the sync answer a reconnecting writer gets (sent after its offline edits commit).
    """
    document = await sync_to_async(services.document_create)(owner=alice, title="Durable")
    token = await sync_to_async(mint_token)("alice", "docs:read docs:write")
    headers = {"Authorization": f"Bearer {token}"}
    first = await sync_to_async(live_server_factory)()
    url = f"/ws/docs/{document.pk}"

    writer_ws = await websockets.connect(first.ws_url + url, additional_headers=headers)
    observer_ws = await websockets.connect(first.ws_url + url, additional_headers=headers)
    writer, observer = RawClient(writer_ws), RawClient(observer_ws)
    for client in (writer, observer):
        await client.socket.send(sync_step1(client.doc.get_state()))
        await client.run_until(lambda c=client: c.synced)  # type: ignore[misc]

    acknowledged: list[str] = []
    for i in range(40):
        token_text = f"<{i}>"
        await writer.insert(token_text)
        if i % 4 == 3:
            await observer.run_until(lambda t=token_text: t in str(observer.text))  # type: ignore[misc]
            acknowledged = [f"<{j}>" for j in range(i + 1)]
    # Mid-edit: a few more sent but not waited for, then the process dies.
    for i in range(40, 50):
        await writer.insert(f"<{i}>")
    first.process.kill()
    first.process.wait(timeout=10)
    # The writer keeps typing offline.
    for i in range(50, 60):
        writer.text.insert(len(writer.text), f"<{i}>")
    for ws in (writer_ws, observer_ws):
        await ws.close()

    second = await sync_to_async(live_server_factory)()
    async with websockets.connect(second.ws_url + url, additional_headers=headers) as ws:
        writer.socket = ws
        writer.synced = False
        await ws.send(sync_step1(writer.doc.get_state()))
        await writer.run_until(lambda: writer.synced)  # answered only after its offline edits committed
        synced_text = str(writer.text)
    async with websockets.connect(second.ws_url + url, additional_headers=headers) as ws:
        fresh = RawClient(ws)
        await ws.send(sync_step1(fresh.doc.get_state()))
        await fresh.run_until(lambda: fresh.synced)
        seen = str(fresh.text)
    assert all(token_text in seen for token_text in acknowledged)
    assert seen == synced_text  # every replica converged, offline edits included
    assert all(f"<{i}>" in seen for i in range(60))
    second.stop()
    assert await Document.objects.filter(pk=document.pk).aexists()
