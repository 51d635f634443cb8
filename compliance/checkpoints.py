"""Signed checkpoints of the audit chain: every AUDIT_CHECKPOINT_EVERY events, on each export, on erasure.

A checkpoint signs (Ed25519, AUDIT_SIGNING_KEY) one event's id and hash. The chain
makes that hash depend on every event before it, so a database rewritten and
re-hashed from the start no longer matches a checkpoint signed before the rewrite,
and the rewriter, who has the database but not the key, cannot sign a new one.
Checkpoints are stored in the database and shipped, as they are made, to an
append-only place outside it (AUDIT_CHECKPOINT_FILE, AUDIT_CHECKPOINT_SYSLOG), so
deleting them from the database is no way out either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.handlers
import os
import socket
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance import signing
from compliance.models import AuditCheckpoint
from webconnect.models import AuditChainHead, AuditEvent

logger = logging.getLogger(__name__)


@cache
def _key(value: str) -> Ed25519PrivateKey:
    return signing.private_key(value)


def signing_key() -> Ed25519PrivateKey | None:
    value = settings.AUDIT_SIGNING_KEY
    return _key(value) if value else None


def public_key_text() -> str | None:
    key = signing_key()
    return signing.public_key_text(key) if key is not None else None


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def checkpoint_message(*, event_id: int, chain_hash: str, event_count: int | None, created_at: str) -> bytes:
    """What a checkpoint's signature covers (verifiers rebuild it from the checkpoint's fields)."""
    return canonical(
        {"v": 1, "event_id": event_id, "hash": chain_hash, "event_count": event_count, "created_at": created_at}
    )


def checkpoint_record(checkpoint: AuditCheckpoint) -> dict[str, Any]:
    """A checkpoint as one JSON object (shipped, exported and read back by verifyaudit)."""
    return {
        "v": 1,
        "event_id": checkpoint.event_id,
        "hash": checkpoint.chain_hash,
        "event_count": checkpoint.event_count,
        "created_at": checkpoint.created_at.isoformat(),
        "reason": checkpoint.reason,
        "key": checkpoint.key_fingerprint,
        "signature": checkpoint.signature,
    }


def checkpoint_create(*, event: AuditEvent, event_count: int | None, reason: str) -> AuditCheckpoint | None:
    """Sign `event`'s place in the chain; None when no AUDIT_SIGNING_KEY is set."""
    key = signing_key()
    if key is None:
        return None
    created_at = timezone.now()
    message = checkpoint_message(
        event_id=event.pk, chain_hash=event.hash, event_count=event_count, created_at=created_at.isoformat()
    )
    checkpoint = AuditCheckpoint.objects.create(
        created_at=created_at,
        event_id=event.pk,
        event_count=event_count,
        chain_hash=event.hash,
        reason=reason,
        key_fingerprint=signing.key_fingerprint(signing.public_key_text(key)),
        signature=signing.sign(key, message),
    )
    record = checkpoint_record(checkpoint)
    transaction.on_commit(lambda: ship(record))
    return checkpoint


def checkpoint_head(*, reason: str) -> AuditCheckpoint | None:
    """A checkpoint of the newest event (the chain's head)."""
    with transaction.atomic():
        head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
        event = AuditEvent.objects.order_by("-id").first()
        if head is None or event is None:
            return None
        return checkpoint_create(event=event, event_count=head.event_count, reason=reason)


def on_append(event: AuditEvent, event_count: int) -> None:
    """The audit append hook: a checkpoint every AUDIT_CHECKPOINT_EVERY events (under the head's lock)."""
    if event_count % settings.AUDIT_CHECKPOINT_EVERY == 0:
        checkpoint_create(event=event, event_count=event_count, reason="every N events")


def on_export(directory: Path, stem: str, manifest: dict[str, Any]) -> None:
    """The export hook: sign the export's last event, add the checkpoints in its range, sign the manifest."""
    key = signing_key()
    if key is None:
        return
    last_id, first_id = manifest.get("last_event_id"), manifest.get("first_event_id")
    if last_id is not None:
        last = AuditEvent.objects.get(pk=last_id)
        checkpoint_create(event=last, event_count=None, reason="export")
        covering = AuditCheckpoint.objects.filter(event_id__gte=first_id, event_id__lte=last_id).order_by("id")
        lines = [json.dumps(checkpoint_record(c), sort_keys=True) + "\n" for c in covering]
        name = f"{stem}.checkpoints.jsonl"
        data = "".join(lines).encode()
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(directory / name)
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
    public = signing.public_key_text(key)
    manifest["signing_key"] = signing.key_fingerprint(public)
    manifest["signature"] = signing.sign(key, canonical(manifest))


# --- Shipping to an append-only store outside the database -------------------------------------


def ship(record: dict[str, Any]) -> None:
    line = json.dumps(record, sort_keys=True)
    if settings.AUDIT_CHECKPOINT_FILE:
        try:
            path = Path(settings.AUDIT_CHECKPOINT_FILE)
            path.parent.mkdir(parents=True, exist_ok=True)
            # O_APPEND: one line per write, never rewritten (make the file append-only: chattr +a).
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            logger.exception("audit checkpoint: could not append to AUDIT_CHECKPOINT_FILE")
    if settings.AUDIT_CHECKPOINT_SYSLOG:
        try:
            _syslog().info("webconnect-audit-checkpoint %s", line)
        except OSError:
            logger.exception("audit checkpoint: could not send to AUDIT_CHECKPOINT_SYSLOG")


@cache
def _syslog_for(address: str) -> logging.Logger:
    target: str | tuple[str, int]
    if address.startswith("/"):
        target = address
    else:
        host, _, port = address.rpartition(":")
        target = (host or "localhost", int(port or 514))
    handler = logging.handlers.SysLogHandler(address=target, socktype=socket.SOCK_DGRAM)
    handler.setFormatter(logging.Formatter("%(message)s"))
    channel = logging.getLogger(f"webconnect.audit.checkpoints.{address}")
    channel.propagate = False
    channel.setLevel(logging.INFO)
    channel.addHandler(handler)
    return channel


def _syslog() -> logging.Logger:
    return _syslog_for(settings.AUDIT_CHECKPOINT_SYSLOG)
