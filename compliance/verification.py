"""verifyaudit: the audit chain checked against its signed checkpoints, in the database or in a copied export.

Internal consistency (every event links to the one before and matches its hash)
is what webconnect.audit already checks; a chain rewritten and re-hashed from the
start passes that. What it cannot pass is a checkpoint signed before the rewrite:
the event it names no longer has the hash it signed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.utils.dateparse import parse_datetime

from compliance import signing
from compliance.checkpoints import canonical, checkpoint_message, checkpoint_record
from webconnect.audit import TOMBSTONE_ACTION, redactions_of, verify_events
from webconnect.models import AuditEvent


@dataclass
class AuditReport:
    checked_events: int = 0
    checked_checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def tombstone_message(details: Mapping[str, Any]) -> bytes:
    """What an erasure tombstone's signature covers (compliance.subjects writes it)."""
    return canonical({"v": 1, "pseudonym": details.get("pseudonym"), "redacted": details.get("redacted")})


def check_checkpoints(
    records: Iterable[Mapping[str, Any]],
    hashes: Mapping[int, str],
    public: Ed25519PublicKey | None,
    report: AuditReport,
    *,
    first_id: int | None,
    last_id: int | None,
) -> None:
    """Each checkpoint: its signature, and the hash of the event it names (when that event is at hand)."""
    for record in records:
        event_id, signed_hash = int(record["event_id"]), str(record["hash"])
        if public is not None:
            message = checkpoint_message(
                event_id=event_id,
                chain_hash=signed_hash,
                event_count=record.get("event_count"),
                created_at=str(record["created_at"]),
            )
            if not signing.verify(public, message, str(record["signature"])):
                report.problems.append(f"checkpoint at event #{event_id}: the signature is not valid for this key")
                continue
        report.checked_checkpoints += 1
        if event_id in hashes:
            if hashes[event_id] != signed_hash:
                report.problems.append(
                    f"event #{event_id} does not have the hash signed in its checkpoint of {record['created_at']}: "
                    "the chain was rewritten after it was signed"
                )
        elif first_id is not None and last_id is not None and first_id <= event_id <= last_id:
            report.problems.append(f"event #{event_id}, named by a signed checkpoint, is missing")


def check_tombstones(events: Iterable[AuditEvent], public: Ed25519PublicKey | None, report: AuditReport) -> None:
    if public is None:
        return
    for event in events:
        if event.action == TOMBSTONE_ACTION and not signing.verify(
            public, tombstone_message(event.details), str(event.details.get("signature", ""))
        ):
            report.problems.append(f"erasure tombstone #{event.pk} is not signed by this key")


def verify_database(*, public: Ed25519PublicKey | None, shipped: Path | None = None) -> AuditReport:
    """The chain in the database against the checkpoints in the database and, if given, a shipped copy."""
    from compliance.models import AuditCheckpoint
    from webconnect.audit import audit_verify_chain
    from webconnect.models import AuditChainHead

    report = AuditReport()
    verdict = audit_verify_chain()
    report.checked_events = verdict.checked
    if not verdict.ok:
        report.problems.append(f"event #{verdict.broken_event_id}: {verdict.reason}")
    records = [checkpoint_record(c) for c in AuditCheckpoint.objects.order_by("id")]
    if shipped is not None:
        records += _read_jsonl(shipped, report)
    ids = {int(r["event_id"]) for r in records}
    hashes = dict(AuditEvent.objects.filter(pk__in=ids).values_list("pk", "hash"))
    bounds = AuditEvent.objects.order_by("id").values_list("id", flat=True)
    first, last = bounds.first(), bounds.last()
    check_checkpoints(records, hashes, public, report, first_id=first, last_id=last)
    check_tombstones(AuditEvent.objects.filter(action=TOMBSTONE_ACTION), public, report)
    head = AuditChainHead.objects.filter(pk=1).first()
    if public is not None and not records and head is not None and head.event_count >= _every():
        report.problems.append(
            f"no signed checkpoint, though {head.event_count} events were appended (checkpoints deleted?)"
        )
    return report


def _every() -> int:
    from django.conf import settings

    return int(settings.AUDIT_CHECKPOINT_EVERY)


def _read_jsonl(path: Path, report: AuditReport) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                report.problems.append(f"{path.name} line {number} is not JSON")
    return rows


def _event(row: Mapping[str, Any]) -> AuditEvent:
    created_at = parse_datetime(str(row["created_at"]))
    if created_at is None:
        raise ValueError(f"event #{row.get('id')}: created_at {row['created_at']!r} is not a date and time")
    return AuditEvent(
        pk=int(row["id"]),
        created_at=created_at,
        actor_id=row["actor_id"],
        actor_name=row["actor_name"],
        action=row["action"],
        target=row["target"],
        outcome=row["outcome"],
        client_ip=row["client_ip"],
        details=row["details"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def verify_export(directory: Path, *, public: Ed25519PublicKey | None) -> AuditReport:
    """Every export (manifest + files) in `directory`, from the files alone: no database."""
    report = AuditReport()
    manifests = sorted(directory.glob("*.manifest.json"))
    if not manifests:
        report.problems.append(f"no *.manifest.json in {directory}")
    for manifest_path in manifests:
        manifest = json.loads(manifest_path.read_text())
        name = manifest_path.name
        signature = manifest.pop("signature", None)
        if public is not None and (not signature or not signing.verify(public, canonical(manifest), str(signature))):
            report.problems.append(f"{name}: the manifest is not signed by this key (edited, or not signed)")
        for file_name, sha in manifest.get("files", {}).items():
            path = directory / file_name
            if not path.is_file():
                report.problems.append(f"{name}: {file_name} is missing")
            elif hashlib.sha256(path.read_bytes()).hexdigest() != sha:
                report.problems.append(f"{name}: {file_name} does not match its checksum in the manifest")
        stem = name.removesuffix(".manifest.json")
        events_path = directory / f"{stem}.jsonl"
        if not events_path.is_file():
            continue
        try:
            events = [_event(row) for row in _read_jsonl(events_path, report)]
        except (KeyError, ValueError, TypeError) as exc:
            report.problems.append(f"{stem}: an event row cannot be read: {exc}")
            continue
        tombstones = [e.details for e in events if e.action == TOMBSTONE_ACTION]
        verdict, last_hash, _ = verify_events(
            events, start_hash=manifest.get("prev_hash") or "", redactions=redactions_of(tombstones)
        )
        report.checked_events += verdict.checked
        if not verdict.ok:
            report.problems.append(f"{stem}: event #{verdict.broken_event_id}: {verdict.reason}")
        elif events and last_hash != manifest.get("last_hash"):
            report.problems.append(f"{stem}: the last event's hash is not the manifest's last_hash")
        check_tombstones(events, public, report)
        checkpoints_path = directory / f"{stem}.checkpoints.jsonl"
        records = _read_jsonl(checkpoints_path, report) if checkpoints_path.is_file() else []
        if public is not None and events and not records:
            report.problems.append(f"{stem}: no signed checkpoint covers this export")
        check_checkpoints(
            records,
            {e.pk: e.hash for e in events},
            public,
            report,
            first_id=events[0].pk if events else None,
            last_id=events[-1].pk if events else None,
        )
    return report
