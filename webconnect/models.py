from __future__ import annotations

from django.conf import settings
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


# --- Real-time messaging ---------------------------------------------------------------


class Namespace(models.Model):
    """What a family of channels (`<namespace>.<name>`) keeps and allows; edited by administrators."""

    name = models.SlugField(max_length=32, unique=True)
    history_size = models.PositiveIntegerField(default=100, help_text="Messages kept per channel (0 = no history).")
    history_ttl = models.PositiveIntegerField(default=3600, help_text="Seconds a channel's history is kept.")
    presence = models.BooleanField(default=True)
    join_leave = models.BooleanField(default=False, help_text="Send join/leave events to subscribers.")
    client_publish = models.BooleanField(default=True, help_text="Clients may publish (otherwise only the server).")
    anonymous_read = models.BooleanField(default=False, help_text="Signed-out connections may subscribe and read.")
    payload_schema = models.JSONField(
        null=True, blank=True, help_text="Optional JSON Schema that published payloads must match."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from django.core.exceptions import ValidationError
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        if self.payload_schema is not None:
            try:
                Draft202012Validator.check_schema(self.payload_schema)
            except SchemaError as exc:
                raise ValidationError({"payload_schema": f"not a valid JSON Schema: {exc.message}"}) from exc


class RealtimeTicket(models.Model):
    """A one-time WebSocket ticket: only its hash is stored, consumed by a single UPDATE."""

    digest = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    scopes = models.CharField(max_length=512, blank=True)  # space-separated; "*" = a session's full rights
    token_id = models.BigIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"ticket for user {self.user_id}"
