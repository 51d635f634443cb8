"""Encryption at rest, end to end: a word typed in a document and one published on a channel are
nowhere in the database files or in Redis, and both read back through the pages and the API."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from django.db import connection
from django.test import override_settings

from collab import services
from collab.models import Document, DocumentUpdate, DocumentVersion
from tests.compliance.helpers import new_keys, read_text, type_paragraph
from tests.conftest import LiveServer, signed_in_session

pytestmark = pytest.mark.django_db(transaction=True)


def _write_and_read_back(server: LiveServer, alice: Any, mint_token: Callable[..., str], keys: str) -> str:
    """Type a unique word in a document, publish another on a channel; return both words after reading them back."""
    doc_word = "quokka" + uuid.uuid4().hex[:10]
    chat_word = "wombat" + uuid.uuid4().hex[:10]
    document = services.document_create(owner=alice, title="Field notes")
    token = mint_token("alice", "docs:read docs:write realtime:read realtime:write")
    headers = {"Authorization": f"Bearer {token}"}

    asyncio.run(type_paragraph(server.ws_url, document.pk, token, f"the secret is {doc_word}"))
    # A named version (the server stores the full state); compaction (snapshot + automatic version)
    # ran when the editor left, and runs again here in case it had not yet.
    made = requests.post(
        f"{server.url}/api/documents/{document.pk}/versions/", json={"name": "v1"}, headers=headers, timeout=10
    )
    assert made.status_code == 201, made.text
    with override_settings(ENCRYPTION_KEYS=keys):
        services.document_compact(document_id=document.pk)
    assert Document.objects.get(pk=document.pk).snapshot_seq > 0
    asyncio.run(type_paragraph(server.ws_url, document.pk, token, f"and again {doc_word}"))  # a log row after it

    published = requests.post(
        f"{server.url}/api/channels/chat.field/publish/", json={"text": chat_word}, headers=headers, timeout=10
    )
    assert published.status_code in (200, 201), published.text

    # Read back: the API, a fresh editor (the page's), the page of the version, the channel history.
    exported = requests.get(f"{server.url}/api/documents/{document.pk}/export/md/", headers=headers, timeout=10)
    assert exported.status_code == 200 and exported.text.count(doc_word) == 2, exported.text
    assert asyncio.run(read_text(server.ws_url, document.pk, token)).count(doc_word) == 2
    version = DocumentVersion.objects.filter(document=document, name="v1").get()
    page = signed_in_session(server, "alice").get(f"{server.url}/docs/{document.pk}/versions/{version.pk}/", timeout=10)
    assert page.status_code == 200 and doc_word in page.text
    history = requests.get(f"{server.url}/api/channels/chat.field/history/", headers=headers, timeout=10)
    assert history.status_code == 200 and chat_word in history.text, history.text

    # Stored sealed: every value carries the marker and key id (log rows may be compacted away by now;
    # their deleted pages are still in the files searched below).
    stored = [bytes(Document.objects.get(pk=document.pk).snapshot)]
    stored += [bytes(v) for v in DocumentVersion.objects.filter(document=document).values_list("state", flat=True)]
    stored += [bytes(v) for v in DocumentUpdate.objects.filter(document=document).values_list("data", flat=True)]
    assert len(stored) >= 3 and all(value.startswith(b"\xffwce" + b"k1") for value in stored)
    return doc_word + " " + chat_word


def _assert_not_in_files(paths: list[Path], words: list[str]) -> int:
    checked = 0
    for path in paths:
        if path.is_file():
            data = path.read_bytes()
            checked += len(data)
            for word in words:
                assert word.encode() not in data, f"{word!r} is in {path} in the clear"
    return checked


def _redis_values(url: str) -> list[bytes]:
    """Every key of the Redis database (`redis-cli --scan`) and its DUMP."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = subprocess.run(
            ["redis-cli", "-u", url, "--scan"], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
        return [key.encode() + b"=" + (client.dump(key) or b"") for key in keys]
    finally:
        client.close()


@pytest.mark.services
def test_words_typed_and_published_are_nowhere_in_postgres_or_redis_yet_read_back(
    live_server_factory: Callable[..., LiveServer], alice: Any, mint_token: Callable[..., str]
) -> None:
    keys = new_keys("k1")
    server = live_server_factory(ENCRYPTION_KEYS=keys)
    words = _write_and_read_back(server, alice, mint_token, keys).split()
    server.stop()  # its connections gone, everything it wrote is committed

    values = _redis_values(settings.REDIS_URL)
    assert any(b":stream=" in value for value in values)  # the channel's history is there, sealed
    for value in values:
        for word in words:
            assert word.encode() not in value
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")  # every page written to the data files
        cursor.execute("SHOW data_directory")
        data_directory = Path(cursor.fetchone()[0])
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        oid = cursor.fetchone()[0]
    files = [*(data_directory / "base" / str(oid)).iterdir(), *(data_directory / "pg_wal").iterdir()]
    assert _assert_not_in_files(files, words) > 1_000_000


def test_words_typed_and_published_are_nowhere_in_the_sqlite_files_yet_read_back(
    live_server_factory: Callable[..., LiveServer], alice: Any, mint_token: Callable[..., str]
) -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("the SQLite tier (the services tier checks PostgreSQL's files)")
    keys = new_keys("k1")
    server = live_server_factory(ENCRYPTION_KEYS=keys)
    words = _write_and_read_back(server, alice, mint_token, keys).split()
    server.stop()
    name = Path(str(connection.settings_dict["NAME"]))
    files = [name, name.with_name(name.name + "-wal"), name.with_name(name.name + "-journal")]
    assert _assert_not_in_files(files, words) > 10_000
