"""The audit trail: append events to a tamper-evident chain, verify and export it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from webconnect.context import current_client_ip
from webconnect.models import AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)

# Keys that must never reach the audit log, whatever a caller passes in details.
_SECRET_KEYS = {
    "password",
    "password1",
    "password2",
    "old_password",
    "new_password1",
    "new_password2",
    "token",
    "access_token",
    "refresh_token",
    "client_secret",
    "secret",
    "ticket",
}

EXPORT_FIELDS = [
    "id",
    "created_at",
    "actor_id",
    "actor_name",
    "action",
    "target",
    "outcome",
    "client_ip",
    "details",
    "prev_hash",
    "hash",
]


def _scrub(details: dict[str, Any]) -> dict[str, Any]:
    return {key: ("[redacted]" if key.lower() in _SECRET_KEYS else value) for key, value in details.items()}


def event_hash(
    *,
    prev_hash: str,
    created_at: datetime,
    actor_id: int | None,
    actor_name: str,
    action: str,
    target: str,
    outcome: str,
    client_ip: str | None,
    details: dict[str, Any],
) -> str:
    canonical = json.dumps(
        [prev_hash, created_at.isoformat(), actor_id, actor_name, action, target, outcome, client_ip, details],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


# Hooks apps register from AppConfig.ready(): after each append (inside its transaction, the
# head row locked; the compliance app signs checkpoints here) and before an export's manifest
# is written (it may add files and fields to the manifest).
AppendHook = Callable[[AuditEvent, int], None]  # the event, the number of events appended so far
ExportHook = Callable[[Any, str, dict[str, Any]], None]  # directory (Path), file stem, the manifest
_append_hooks: list[AppendHook] = []
_export_hooks: list[ExportHook] = []


def register_append_hook(hook: AppendHook) -> None:
    if hook not in _append_hooks:
        _append_hooks.append(hook)


def register_export_hook(hook: ExportHook) -> None:
    if hook not in _export_hooks:
        _export_hooks.append(hook)


def run_export_hooks(directory: Any, stem: str, manifest: dict[str, Any]) -> None:
    for hook in _export_hooks:
        hook(directory, stem, manifest)


# Erasure (a data-subject request) must remove a person's name from events without breaking the
# chain. The tombstone approach: the events' text is rewritten in place with a pseudonym, their
# `hash` and `prev_hash` stay (so links and signed checkpoints still hold), and one appended
# event of this action lists, per rewritten event, the hash of its rewritten contents. The
# verifier accepts an event whose contents match either its own hash or the one a later tombstone
# recorded for it. The tombstone itself is chained (and signed, see compliance.subjects).
TOMBSTONE_ACTION = "audit.erased"


def content_hash(event: AuditEvent) -> str:
    """The hash of an event's contents as stored now (equal to `event.hash` unless rewritten)."""
    return _stored_hash(event)


def _stored_hash(event: AuditEvent) -> str:
    return event_hash(
        prev_hash=event.prev_hash,
        created_at=event.created_at,
        actor_id=event.actor_id,
        actor_name=event.actor_name,
        action=event.action,
        target=event.target,
        outcome=event.outcome,
        client_ip=event.client_ip,
        details=event.details,
    )


def _locked_head() -> AuditChainHead:
    try:
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(pk=1)
    except IntegrityError:
        # Two first writers raced to create the head: the loser reads the winner's row.
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


def audit_record(
    *,
    action: str,
    outcome: str = AuditEvent.Outcome.SUCCESS,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    actor_name: str = "",
    target: str = "",
    client_ip: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain (inside the caller's transaction, if any).

    The head row is locked for the append, so concurrent writers in any number
    of processes queue up and each links to the one before it.
    """
    actor_id = actor.pk if actor is not None and actor.is_authenticated else None
    if actor is not None and actor.is_authenticated and not actor_name:
        actor_name = actor.get_username()
    clean_details = _scrub(details or {})
    # Round-trip through JSON so the hash is computed over exactly what the
    # database will hand back when the chain is verified.
    clean_details = json.loads(json.dumps(clean_details, default=str))
    with transaction.atomic():
        head = _locked_head()
        created_at = timezone.now()
        fields: dict[str, Any] = {
            "prev_hash": head.last_hash,
            "created_at": created_at,
            "actor_id": actor_id,
            "actor_name": actor_name[:150],
            "action": action,
            "target": target[:255],
            "outcome": str(outcome),
            "client_ip": client_ip if client_ip is not None else current_client_ip.get(),
            "details": clean_details,
        }
        event = AuditEvent.objects.create(hash=event_hash(**fields), **fields)
        head.last_hash = event.hash
        head.event_count += 1
        head.save(update_fields=["last_hash", "event_count"])
        for hook in _append_hooks:
            hook(event, head.event_count)
    return event


@dataclass(frozen=True)
class ChainVerification:
    ok: bool
    checked: int
    broken_event_id: int | None = None
    reason: str = ""


def redactions_of(tombstones: Iterable[dict[str, Any]]) -> dict[int, str]:
    """Event id → hash of its rewritten contents, from tombstone details (the later tombstone wins)."""
    found: dict[int, str] = {}
    for details in tombstones:
        for event_id, content_hash in (details.get("redacted") or {}).items():
            found[int(event_id)] = str(content_hash)
    return found


def tombstone_redactions() -> dict[int, str]:
    tombstones = AuditEvent.objects.filter(action=TOMBSTONE_ACTION).order_by("id").values_list("details", flat=True)
    return redactions_of(tombstones)


def verify_events(
    events: Iterable[AuditEvent], *, start_hash: str, redactions: dict[int, str]
) -> tuple[ChainVerification, str, int | None]:
    """Check that `events` (in order) link from `start_hash` and match their hashes (or a tombstone's).

    Returns the verdict, the last hash reached and the last event id; used on the database
    and on an export read back from files (compliance.verification), so both judge alike.
    """
    expected_prev = start_hash
    checked = 0
    last_event_id: int | None = None
    for event in events:
        if event.prev_hash != expected_prev:
            return (
                ChainVerification(
                    False,
                    checked,
                    event.pk,
                    "does not link to the event before it (an event before it was removed, inserted or altered)",
                ),
                expected_prev,
                last_event_id,
            )
        contents = _stored_hash(event)
        if contents != event.hash and redactions.get(event.pk) != contents:
            return (
                ChainVerification(False, checked, event.pk, "its contents do not match its hash (edited)"),
                expected_prev,
                last_event_id,
            )
        expected_prev = event.hash
        last_event_id = event.pk
        checked += 1
    return ChainVerification(True, checked), expected_prev, last_event_id


def audit_verify_chain() -> ChainVerification:
    """Walk the whole chain in order and say where, if anywhere, it breaks."""
    head = AuditChainHead.objects.filter(pk=1).first()
    verdict, expected_prev, last_event_id = verify_events(
        AuditEvent.objects.order_by("id").iterator(chunk_size=2000),
        start_hash=head.checkpoint_hash if head else "",
        redactions=tombstone_redactions(),
    )
    if not verdict.ok:
        return verdict
    checked = verdict.checked
    if head is not None and head.last_hash != expected_prev:
        return ChainVerification(
            False,
            checked,
            last_event_id,
            "the chain ends before the newest recorded event (events removed from the end)",
        )
    return ChainVerification(True, checked)


def audit_export_jsonl(events: Iterable[AuditEvent]) -> Iterator[str]:
    for event in events:
        yield json.dumps(_export_row(event), default=str) + "\n"


def audit_export_csv(events: Iterable[AuditEvent]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_FIELDS)
    for event in events:
        row = _export_row(event)
        row["details"] = json.dumps(row["details"], sort_keys=True)
        writer.writerow([row[field] for field in EXPORT_FIELDS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def _export_row(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "created_at": event.created_at.isoformat(),
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "target": event.target,
        "outcome": event.outcome,
        "client_ip": event.client_ip,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def audit_prune_batch(*, through_event_id: int, batch_size: int) -> int:
    """Delete the oldest events up to `through_event_id`, one batch, keeping the chain verifiable.

    In the same transaction the head's checkpoint moves to the hash of the
    last deleted event, so the first surviving event still links to where
    verification starts. Returns how many were deleted (0 when done).
    """
    with transaction.atomic():
        head = _locked_head()
        batch = list(
            AuditEvent.objects.filter(id__lte=through_event_id).order_by("id").values_list("id", "hash")[:batch_size]
        )
        if not batch:
            return 0
        AuditEvent.objects.filter(id__in=[event_id for event_id, _ in batch]).delete()
        head.checkpoint_hash = batch[-1][1]
        head.save(update_fields=["checkpoint_hash"])
    return len(batch)
