from __future__ import annotations

from django.db import models


class AuditEvent(models.Model):
    """One security-relevant event, chained to the previous one by its hash.

    Rows are written only through `webconnect.audit.audit_record` and never
    updated: `hash` covers every field and the previous event's hash, so an
    edited, removed or reordered row breaks the chain at a place that
    `audit_verify_chain` names.
    """

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        FAILURE = "failure"
        DENIED = "denied"
        ERROR = "error"

    created_at = models.DateTimeField(db_index=True)
    # Plain values rather than a foreign key: deleting a user must not rewrite
    # (and so break) the events that name them.
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    target = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, db_index=True)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["action", "created_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.outcome} by {self.actor_name or '-'}"


class AuditChainHead(models.Model):
    """The single row writers lock to append to the chain one at a time.

    It also remembers the newest hash, so cutting events off the end of the
    chain is detected, and the checkpoint hash left by pruning (the hash of
    the last event that retention removed), from which verification starts.
    """

    last_hash = models.CharField(max_length=64, blank=True)
    event_count = models.BigIntegerField(default=0)
    checkpoint_hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"audit chain head ({self.event_count} events)"
