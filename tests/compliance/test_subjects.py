"""Data-subject requests: export then erase a person; the chain still verifies and the name is gone."""

from __future__ import annotations

import io
import json
import zipfile
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import Client
from pycrdt import XmlFragment

from collab import convert, services
from collab.models import Document, DocumentUpdate
from compliance import signing
from policies.services import share_grant
from tests.conftest import PASSWORD
from webconnect.audit import audit_verify_chain
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "zoltanna"  # distinctive: the test looks for it everywhere


@pytest.fixture
def signed(settings: Any, tmp_path: Path) -> None:
    settings.AUDIT_SIGNING_KEY = signing.generate_signing_key()
    settings.AUDIT_CHECKPOINT_EVERY = 4
    settings.COMPLIANCE_EXPORT_DIR = str(tmp_path / "subjects")


def _a_person_with_a_history(make_user: Any, mint_token: Any) -> tuple[Any, Any, Document, Document, str]:
    person = make_user(NAME)
    person.first_name, person.last_name = "Zoltanna", "Quill"
    person.save()
    friend = make_user("friend")
    own = services.document_create(owner=person, title="Travel plans")
    services.document_change(
        document=own, user=person, change=lambda f: convert.markdown_into(f, "# Lisbon\n\ntrain at nine")
    )
    shared = services.document_create(owner=friend, title="Shared list")
    share_grant(resource_type="Document", resource_id=shared.pk, role="editor", user=person, actor=friend)
    services.document_change(document=shared, user=person, change=lambda f: convert.markdown_into(f, "bring the map"))
    services.version_create(document=shared, user=person, name="after the map")
    services.document_compact(document_id=shared.pk)
    browser = Client()
    assert browser.post("/accounts/login/", {"username": NAME, "password": "wrong"}).status_code == 200
    assert browser.post("/accounts/login/", {"username": NAME, "password": PASSWORD}).status_code == 302
    token = mint_token(NAME, "realtime:read realtime:write")
    published = Client(HTTP_AUTHORIZATION=f"Bearer {token}").post(
        "/api/channels/chat.subject-request/publish/",
        data=json.dumps({"text": "see you at the station"}),
        content_type="application/json",
    )
    assert published.status_code == 201, published.content
    return person, friend, own, shared, token


def _everything_in_the_database() -> str:
    """Every row of every table, as text (what `SELECT *` on the whole database shows)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 (introspected names)
            for row in cursor.fetchall():
                chunks.append(
                    " ".join(bytes(v).decode("latin-1") if isinstance(v, bytes | memoryview) else str(v) for v in row)
                )
    return "\n".join(chunks)


def test_export_then_erase_leaves_the_chain_verifiable_and_the_name_nowhere(
    signed: None, make_user: Any, mint_token: Any
) -> None:
    _export_then_erase(make_user, mint_token)


@pytest.mark.services
def test_export_then_erase_on_postgres_and_redis_covers_retained_messages(
    signed: None, make_user: Any, mint_token: Any
) -> None:
    _export_then_erase(make_user, mint_token)


def _export_then_erase(make_user: Any, mint_token: Any) -> None:
    person, _friend, own, shared, token = _a_person_with_a_history(make_user, mint_token)

    out = StringIO()
    call_command("exportuser", NAME, stdout=out)
    archive = zipfile.ZipFile(out.getvalue().strip())
    names = set(archive.namelist())
    assert {"profile.json", "groups.json", "tokens.json", "audit.jsonl", "manifest.json"} <= names
    assert json.loads(archive.read("profile.json"))["username"] == NAME
    assert "train at nine" in archive.read(f"documents/{own.pk}.md").decode()
    assert json.loads(archive.read(f"documents/{own.pk}.json"))["title"] == "Travel plans"
    assert json.loads(archive.read("documents/edited-elsewhere.json")) == [shared.pk]
    audit_rows = [json.loads(line) for line in archive.read("audit.jsonl").decode().splitlines()]
    seen = {(row["action"], row["outcome"]) for row in audit_rows}
    assert {("auth.login", "success"), ("auth.login", "failure"), ("token.issued", "success")} <= seen
    assert json.loads(archive.read("tokens.json"))["access_tokens"][0]["scope"] == "realtime:read realtime:write"
    assert all(token not in archive.read(name).decode() for name in names)  # metadata, never the token
    if settings.REDIS_URL:
        assert "see you at the station" in archive.read("messages.jsonl").decode()
    assert AuditEvent.objects.filter(action="subject.exported", target=f"user:{person.pk}").exists()
    assert NAME in _everything_in_the_database()

    out = StringIO()
    call_command("eraseuser", NAME, "--noinput", stdout=out)
    assert "1 documents deleted" in out.getvalue()

    assert not Document.objects.filter(pk=own.pk).exists()
    shared_text = services.load_doc(services.document_state(document_id=shared.pk))
    assert "bring the map" in str(shared_text.get(services.FRAGMENT, type=XmlFragment))  # content stays
    assert not DocumentUpdate.objects.filter(user_id=person.pk).exists()
    verdict = audit_verify_chain()
    assert verdict.ok, verdict
    verified = StringIO()
    call_command("verifyaudit", stdout=verified)  # tombstone signature and every checkpoint hold
    assert verified.getvalue().startswith("ok:")
    erased = AuditEvent.objects.get(action="subject.erased")
    assert erased.details["audit_events_pseudonymised"] >= 4
    everything = _everything_in_the_database()
    for trace in (NAME, "Zoltanna", "Quill", f"{NAME}@example.com"):
        assert trace not in everything, trace
    if settings.REDIS_URL:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            dumps = [client.dump(k) or b"" for k in client.scan_iter(match=f"{settings.REALTIME_REDIS_PREFIX}:*")]
        finally:
            client.close()
        assert not any(b"see you at the station" in dump for dump in dumps)


def test_erasure_can_hand_the_documents_to_someone_else(signed: None, make_user: Any, mint_token: Any) -> None:
    _person, friend, own, _, _ = _a_person_with_a_history(make_user, mint_token)
    call_command("eraseuser", NAME, "--noinput", "--transfer-to", "friend", stdout=StringIO())
    assert Document.objects.get(pk=own.pk).owner == friend
    assert audit_verify_chain().ok


def test_erasure_refuses_unknown_users_clearly(make_user: Any) -> None:
    from django.core.management import CommandError

    make_user("friend")
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("eraseuser", "nobody", "--noinput")
    make_user(NAME)
    with pytest.raises(CommandError, match="no user named 'ghost' to transfer"):
        call_command("eraseuser", NAME, "--noinput", "--transfer-to", "ghost")


def test_the_admin_action_downloads_one_archive_and_audits_it(
    signed: None, make_user: Any, admin_user: Any, client: Client
) -> None:
    person = make_user(NAME)
    client.force_login(admin_user)
    response = client.post(
        "/admin/auth/user/", {"action": "export_personal_data", "_selected_action": [str(person.pk)]}
    )
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert json.loads(archive.read("profile.json"))["username"] == NAME
    event = AuditEvent.objects.get(action="subject.exported")
    assert event.actor_id == admin_user.pk and event.target == f"user:{person.pk}"


def test_archives_past_their_retention_are_pruned_by_a_job(signed: None, make_user: Any, settings: Any) -> None:
    import os
    import time

    from webconnect.jobs.services import job_run

    old = call_command_path(make_user)
    os.utime(old, (time.time() - 40 * 86400,) * 2)
    fresh = call_command_path(make_user, "other")
    assert job_run(name="prune_subject_archives", dry_run=True).details["would_delete"] == [old.name]
    run = job_run(name="prune_subject_archives")
    assert run.items_affected == 1 and not old.exists() and fresh.exists()


def call_command_path(make_user: Any, name: str = NAME) -> Path:
    make_user(name)
    out = StringIO()
    call_command("exportuser", name, stdout=out)
    return Path(out.getvalue().strip())
