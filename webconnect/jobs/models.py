from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models


class DataKind(models.TextChoices):
    AUDIT_EVENTS = "audit_events", "Audit events"
    CHANNEL_HISTORY = "channel_history", "Channel history"
    DOCUMENT_UPDATES = "document_updates", "Document update logs"
    DOCUMENT_VERSIONS = "document_versions", "Document versions"
    SERIES_POINTS = "series_points", "Dashboard time-series points"
    OAUTH_TOKENS = "oauth_tokens", "Expired and revoked OAuth tokens"
    REALTIME_TICKETS = "realtime_tickets", "Expired real-time tickets"
    # No STALE_PRESENCE: presence of a stopped process is garbage as soon as its heartbeat
    # lapses (readers already ignore it), so an age in days meant nothing. The
    # sweep_stale_presence job removes it; migration 0003 removed the policy.
    JOB_RUNS = "job_runs", "Job run records"


class RetentionPolicy(models.Model):
    """How long one kind of data is kept: a maximum age and/or a maximum count."""

    kind = models.CharField(max_length=32, choices=DataKind.choices, unique=True)
    max_age_days = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Delete what is older than this."
    )
    max_count = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Keep at most this many (newest first)."
    )
    enabled = models.BooleanField(default=True)
    legal_hold = models.BooleanField(
        default=False, help_text="Audit events only: suspends all deletion while set (regulatory or legal hold)."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"
        ordering = ["kind"]

    def __str__(self) -> str:
        return self.get_kind_display()

    def clean(self) -> None:
        if self.max_age_days is None and self.max_count is None:
            raise ValidationError("Set a maximum age, a maximum count, or both (or disable the policy).")
        if self.legal_hold and self.kind != DataKind.AUDIT_EVENTS:
            raise ValidationError({"legal_hold": "A legal hold applies to audit events only."})
        if self.legal_hold and self.pk is not None:
            before = RetentionPolicy.objects.filter(pk=self.pk).first()
            if before is not None and _keeps_less(before, self):
                raise ValidationError(
                    "Audit events are under legal hold: lift the hold before shortening their retention."
                )


def _keeps_less(before: RetentionPolicy, after: RetentionPolicy) -> bool:
    def shorter(old: int | None, new: int | None) -> bool:
        return new is not None and (old is None or new < old)

    return shorter(before.max_age_days, after.max_age_days) or shorter(before.max_count, after.max_count)


class JobRun(models.Model):
    """One execution of a job: what it did, or why it failed."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"
        # Its worker died mid-run (SIGKILL, OOM, lost host): the lease lapsed without the
        # run finishing. Set by the next holder of the job's lease or by sweep_lost_job_runs.
        LOST = "lost"

    job = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    dry_run = models.BooleanField(default=False)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    items_affected = models.BigIntegerField(default=0)
    items_failed = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["job", "-started_at"])]

    def __str__(self) -> str:
        return f"{self.job} {self.status} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class JobLock(models.Model):
    """A lease that lets one worker at a time run a job, in any number of processes.

    A lease, not a lock held by a connection: a killed worker's lease simply
    expires, and the live holder renews it after every batch.
    """

    job = models.CharField(max_length=64, primary_key=True)
    holder = models.CharField(max_length=128)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.job} held by {self.holder} until {self.expires_at}"
