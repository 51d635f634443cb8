"""Signed checkpoints of the audit chain's head."""

from __future__ import annotations

from django.db import models


class AuditCheckpoint(models.Model):
    """The chain head at one event, signed with AUDIT_SIGNING_KEY (Ed25519).

    The signature covers `compliance.checkpoints.checkpoint_message`: the event id,
    the count of events so far and the event's hash. Someone who rewrites and
    re-hashes the whole chain in the database cannot re-sign it without the key,
    which is held apart from the database, so verification finds the rewrite.
    """

    created_at = models.DateTimeField(db_index=True)
    event_id = models.BigIntegerField(db_index=True)
    event_count = models.BigIntegerField(null=True, blank=True)  # events appended so far (the head), if known
    chain_hash = models.CharField(max_length=64)
    reason = models.CharField(max_length=32)  # "every N events", "export", "erasure", "manual"
    key_fingerprint = models.CharField(max_length=16)
    signature = models.CharField(max_length=100)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"checkpoint at event #{self.event_id} ({self.reason})"
