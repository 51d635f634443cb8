"""Signed audit checkpoints: a chain rewritten and re-hashed from the start still verifies on its own,
but not against a checkpoint signed before; a copied export verifies offline, and a doctored one fails."""

from __future__ import annotations

import json
import shutil
import socket
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from compliance import signing
from compliance.models import AuditCheckpoint
from tests.compliance.test_keys import manage, manage_env
from webconnect.audit import audit_record, audit_verify_chain, event_hash
from webconnect.jobs.services import job_run
from webconnect.models import AuditChainHead, AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def signed(settings: Any, tmp_path: Path) -> str:
    """Checkpoints every 5 events, signed, shipped to a file; returns the public key."""
    key = signing.generate_signing_key()
    settings.AUDIT_SIGNING_KEY = key
    settings.AUDIT_CHECKPOINT_EVERY = 5
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "shipped" / "checkpoints.jsonl")
    settings.AUDIT_EXPORT_DIR = str(tmp_path / "exports")
    return signing.public_key_text(signing.private_key(key))


def _record(count: int) -> None:
    for n in range(count):
        audit_record(action="test.event", actor_name="ann", target=f"thing:{n}", details={"n": n})


def _rehash(rows: list[dict[str, Any]], start: str) -> str:
    """What an attacker with the database does: change rows, recompute every hash from the start."""
    prev = start
    for row in rows:
        row["actor_name"] = "mallory"
        row["prev_hash"] = prev
        created_at = row["created_at"]
        row["hash"] = event_hash(
            prev_hash=prev,
            created_at=created_at,
            actor_id=row["actor_id"],
            actor_name=row["actor_name"],
            action=row["action"],
            target=row["target"],
            outcome=row["outcome"],
            client_ip=row["client_ip"],
            details=row["details"],
        )
        prev = row["hash"]
    return prev


def _verifyaudit(*args: str) -> str:
    out, err = StringIO(), StringIO()
    try:
        call_command("verifyaudit", *args, stdout=out, stderr=err)
    except CommandError as exc:
        raise AssertionError(err.getvalue() + str(exc)) from exc
    return out.getvalue()


def test_checkpoints_are_signed_every_n_events_and_shipped(signed: str, settings: Any) -> None:
    _record(12)
    checkpoints = list(AuditCheckpoint.objects.order_by("id"))
    assert [c.event_count for c in checkpoints] == [5, 10]
    shipped = [json.loads(line) for line in Path(settings.AUDIT_CHECKPOINT_FILE).read_text().splitlines()]
    assert [s["event_id"] for s in shipped] == [c.event_id for c in checkpoints]
    assert "ok: 12 events, 2 signed checkpoints" in _verifyaudit()


def test_a_chain_rewritten_and_rehashed_is_caught_by_the_signed_checkpoint(signed: str, settings: Any) -> None:
    _rewrite_and_verify(settings)


@pytest.mark.services
def test_a_rewritten_chain_is_caught_on_postgres_too(signed: str, settings: Any) -> None:
    _rewrite_and_verify(settings)


def _rewrite_and_verify(settings: Any) -> None:
    _record(12)
    rows = list(AuditEvent.objects.order_by("id").values())
    last = _rehash(rows, AuditChainHead.objects.get(pk=1).checkpoint_hash)
    for row in rows:
        AuditEvent.objects.filter(pk=row["id"]).update(
            actor_name=row["actor_name"], prev_hash=row["prev_hash"], hash=row["hash"]
        )
    AuditChainHead.objects.filter(pk=1).update(last_hash=last)

    assert audit_verify_chain().ok  # the hash chain alone cannot tell
    with pytest.raises(AssertionError, match="the chain was rewritten after it was signed"):
        _verifyaudit()
    # Deleting the checkpoints from the database does not help: the shipped copy still says.
    AuditCheckpoint.objects.all().delete()
    with pytest.raises(AssertionError, match="no signed checkpoint"):
        _verifyaudit()
    with pytest.raises(AssertionError, match="rewritten"):
        _verifyaudit("--checkpoints", settings.AUDIT_CHECKPOINT_FILE)


def test_a_copied_export_verifies_offline_and_a_rehashed_copy_does_not(
    signed: str, settings: Any, tmp_path: Path
) -> None:
    _record(7)
    run = job_run(name="export_audit", params={"since": timezone.now().date().isoformat()})
    assert run.status == "succeeded", run.error
    stem = run.details["stem"]
    copy = tmp_path / "copy"
    shutil.copytree(settings.AUDIT_EXPORT_DIR, copy)
    assert (copy / f"{stem}.checkpoints.jsonl").is_file()

    # A real process with no database to reach: verification reads only the files.
    offline = manage_env("none", DATABASE_URL="postgres://nobody@127.0.0.1:9/none", REDIS_URL="")
    result = manage("verifyaudit", "--export", str(copy), "--public-key", signed, env=offline)
    assert result.returncode == 0, result.stderr
    assert "ok: 7 events, 2 signed checkpoints" in result.stdout  # at event 5, and the export's own

    # Re-hash the copy and fix up its manifest (checksums, last hash): the signatures give it away.
    events_file = copy / f"{stem}.jsonl"
    manifest_file = copy / f"{stem}.manifest.json"
    manifest = json.loads(manifest_file.read_text())
    rows = [json.loads(line) for line in events_file.read_text().splitlines()]
    for row in rows:
        row["created_at"] = AuditEvent.objects.get(pk=row["id"]).created_at
    manifest["last_hash"] = _rehash(rows, manifest["prev_hash"])
    events_file.write_text("".join(json.dumps(row, default=str) + "\n" for row in rows))
    import hashlib

    manifest["files"][events_file.name] = hashlib.sha256(events_file.read_bytes()).hexdigest()
    manifest_file.write_text(json.dumps(manifest))
    doctored = manage("verifyaudit", "--export", str(copy), "--public-key", signed, env=offline)
    assert doctored.returncode != 0
    assert "the manifest is not signed by this key" in doctored.stderr
    assert "the chain was rewritten after it was signed" in doctored.stderr


def test_checkpoints_can_be_shipped_to_syslog(signed: str, settings: Any) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    try:
        settings.AUDIT_CHECKPOINT_SYSLOG = f"127.0.0.1:{receiver.getsockname()[1]}"
        _record(5)
        datagram = receiver.recv(65536).decode()
    finally:
        receiver.close()
    assert "webconnect-audit-checkpoint" in datagram
    assert json.loads(datagram.split("webconnect-audit-checkpoint ", 1)[1].rstrip("\x00"))["event_count"] == 5
