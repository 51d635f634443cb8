"""The platform's own jobs: audit retention, verification and export; token and job-record pruning."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from oauth2_provider.settings import oauth2_settings

from webconnect.audit import (
    audit_export_csv,
    audit_export_jsonl,
    audit_prune_batch,
    audit_record,
    audit_verify_chain,
    run_export_hooks,
)
from webconnect.jobs.models import DataKind, JobRun
from webconnect.jobs.registry import JobContext, JobResult, delete_in_batches, register_job
from webconnect.jobs.services import job_runs_sweep_lost, retention_policy
from webconnect.models import AuditEvent


def _cutoff_id_for(model: Any, *, max_age_days: int | None, max_count: int | None, time_field: str) -> int | None:
    """The highest id to delete so that what remains satisfies both the age and the count limit."""
    cutoff: int | None = None
    if max_age_days is not None:
        older = model.objects.filter(**{f"{time_field}__lt": timezone.now() - timedelta(days=max_age_days)})
        cutoff = older.aggregate(highest=Max("id"))["highest"]
    if max_count is not None:
        surplus = model.objects.count() - max_count
        if surplus > 0:
            by_count = model.objects.order_by("id").values_list("id", flat=True)[surplus - 1]
            cutoff = max(cutoff or 0, by_count)
    return cutoff


@register_job(
    "prune_audit",
    description="Delete audit events past their retention (never under legal hold)",
    schedule="30 3 * * *",
    kind=DataKind.AUDIT_EVENTS,
)
def prune_audit(context: JobContext) -> JobResult:
    policy = retention_policy(DataKind.AUDIT_EVENTS)
    if policy is None:
        return JobResult(skipped_reason="no enabled retention policy for audit events")
    if policy.legal_hold:
        return JobResult(skipped_reason="audit events are under legal hold")
    through = _cutoff_id_for(
        AuditEvent, max_age_days=policy.max_age_days, max_count=policy.max_count, time_field="created_at"
    )
    if through is None:
        return JobResult(details={"would_delete" if context.dry_run else "deleted": 0})
    if context.dry_run:
        return JobResult(
            details={"would_delete": AuditEvent.objects.filter(id__lte=through).count(), "through_event_id": through}
        )
    deleted = 0
    while batch := audit_prune_batch(through_event_id=through, batch_size=context.batch_size):
        deleted += batch
        context.checkpoint()
    if deleted:
        audit_record(
            action="audit.pruned",
            target=f"audit_event:..{through}",
            details={"deleted": deleted, "max_age_days": policy.max_age_days, "max_count": policy.max_count},
        )
    return JobResult(affected=deleted, details={"deleted": deleted, "through_event_id": through})


@register_job(
    "verify_audit", description="Verify the audit chain end to end; a break raises an alert", schedule="15 * * * *"
)
def verify_audit(context: JobContext) -> JobResult:
    result = audit_verify_chain()
    details = {"checked": result.checked, "broken_event_id": result.broken_event_id}
    if result.ok:
        return JobResult(details=details)
    audit_record(
        action="audit.chain_broken",
        outcome=AuditEvent.Outcome.FAILURE,
        target=f"audit_event:{result.broken_event_id}",
        details={"reason": result.reason, **details},
    )
    return JobResult(details=details, error=f"audit chain broken at event #{result.broken_event_id}: {result.reason}")


def _period(params: dict[str, Any]) -> tuple[datetime, datetime]:
    """`since`/`until` as ISO dates or datetimes (UTC); the default is yesterday."""

    def parse(value: str, name: str) -> datetime:
        parsed = parse_datetime(value)
        if parsed is None and (day := parse_date(value)) is not None:
            parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if parsed is None:
            raise ValueError(f"{name} must be an ISO date or datetime, got {value!r}")
        return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)

    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    since = parse(params["since"], "since") if params.get("since") else today - timedelta(days=1)
    until = parse(params["until"], "until") if params.get("until") else since + timedelta(days=1)
    if until <= since:
        raise ValueError("until must be after since")
    return since, until


def _write_atomically(path: Path, chunks: Any) -> str:
    digest = hashlib.sha256()
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for chunk in chunks:
            out.write(chunk)
            digest.update(chunk.encode())
    tmp.replace(path)
    return digest.hexdigest()


@register_job(
    "export_audit", description="Export a period of the audit trail (JSON lines, CSV, manifest)", schedule="45 0 * * *"
)
def export_audit(context: JobContext) -> JobResult:
    since, until = _period(context.params)
    events = AuditEvent.objects.filter(created_at__gte=since, created_at__lt=until).order_by("id")
    count = events.count()
    stem = f"audit-{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}"
    if context.dry_run:
        return JobResult(details={"would_export": count, "files": [f"{stem}.jsonl", f"{stem}.csv"]})
    directory = Path(settings.AUDIT_EXPORT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    first, last = events.first(), events.last()
    jsonl_sha = _write_atomically(directory / f"{stem}.jsonl", audit_export_jsonl(events.iterator()))
    csv_sha = _write_atomically(directory / f"{stem}.csv", audit_export_csv(events.iterator()))
    manifest = {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "count": count,
        # The boundary hashes tie this file into the chain: the first event links to
        # `prev_hash`, and the next period's first event links to `last_hash`.
        "first_event_id": first.pk if first else None,
        "prev_hash": first.prev_hash if first else None,
        "last_event_id": last.pk if last else None,
        "last_hash": last.hash if last else None,
        "files": {f"{stem}.jsonl": jsonl_sha, f"{stem}.csv": csv_sha},
        "exported_at": timezone.now().isoformat(),
    }
    run_export_hooks(directory, stem, manifest)  # e.g. signed checkpoints (the compliance app)
    _write_atomically(directory / f"{stem}.manifest.json", [json.dumps(manifest, indent=2)])
    audit_record(action="audit.exported", target=stem, details={"count": count})
    return JobResult(affected=count, details={"directory": str(directory), "stem": stem, "count": count})


@register_job(
    "prune_oauth_tokens",
    description="Delete expired and revoked OAuth tokens and grants",
    schedule="0 4 * * *",
    kind=DataKind.OAUTH_TOKENS,
)
def prune_oauth_tokens(context: JobContext) -> JobResult:
    policy = retention_policy(DataKind.OAUTH_TOKENS)
    if policy is None:
        return JobResult(skipped_reason="no enabled retention policy for OAuth tokens")
    # Tokens are only worth keeping briefly after they stop working (for audit
    # correlation); the count limit does not apply to credentials.
    cutoff = timezone.now() - timedelta(days=policy.max_age_days or 1)
    refresh_expiry = timedelta(seconds=oauth2_settings.REFRESH_TOKEN_EXPIRE_SECONDS)
    querysets = {
        "refresh_tokens": get_refresh_token_model().objects.filter(
            Q(revoked__lt=cutoff) | Q(created__lt=cutoff - refresh_expiry)
        ),
        "access_tokens": get_access_token_model()
        .objects.filter(expires__lt=cutoff)
        .filter(Q(refresh_token__isnull=True) | Q(refresh_token__revoked__isnull=False)),
        "grants": get_grant_model().objects.filter(expires__lt=cutoff),
    }
    counts = {name: qs.count() for name, qs in querysets.items()}
    if context.dry_run:
        return JobResult(details={"would_delete": counts})
    deleted = sum(delete_in_batches(queryset, context) for queryset in querysets.values())
    return JobResult(affected=deleted, details={"deleted": counts})


@register_job("prune_job_runs", description="Delete old job run records", schedule="50 4 * * *", kind=DataKind.JOB_RUNS)
def prune_job_runs(context: JobContext) -> JobResult:
    policy = retention_policy(DataKind.JOB_RUNS)
    if policy is None:
        return JobResult(skipped_reason="no enabled retention policy for job runs")
    through = _cutoff_id_for(
        JobRun, max_age_days=policy.max_age_days, max_count=policy.max_count, time_field="started_at"
    )
    stale = JobRun.objects.filter(id__lte=through or 0).exclude(status=JobRun.Status.RUNNING)
    if context.dry_run:
        return JobResult(details={"would_delete": stale.count()})
    deleted = delete_in_batches(stale, context)
    return JobResult(affected=deleted, details={"deleted": deleted})


@register_job(
    "sweep_lost_job_runs",
    description="Mark runs whose worker died mid-run (their lease lapsed) as lost; audited as job.lost",
    schedule="*/5 * * * *",
)
def sweep_lost_job_runs(context: JobContext) -> JobResult:
    if context.dry_run:
        # Runs whose lease lapsed; the live check happens under a row lock in the real run.
        return JobResult(details={"running": JobRun.objects.filter(status=JobRun.Status.RUNNING).count()})
    lost = job_runs_sweep_lost()
    return JobResult(affected=lost, details={"lost": lost})
