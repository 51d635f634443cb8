"""Compliance jobs: key rotation (and, below, data-subject archive retention)."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings

from compliance.rotation import keys_in_use, keys_rotate
from webconnect.jobs.registry import JobContext, JobResult, register_job


@register_job(
    "rotate_keys",
    description="Re-encrypt stored values not under the newest ENCRYPTION_KEYS key (batched, resumable)",
    schedule="35 2 * * *",
)
def rotate_keys(context: JobContext) -> JobResult:
    if context.dry_run:
        return JobResult(details={"key_ids_in_use": keys_in_use()})
    try:
        result = keys_rotate(batch_size=context.batch_size, after_batch=context.checkpoint)
    except ValueError as exc:
        return JobResult(skipped_reason=str(exc))
    return JobResult(affected=result.changed, details={"per_store": result.per_store, "batches": result.batches})


@register_job(
    "prune_subject_archives",
    description="Delete data-subject archives (exportuser) older than COMPLIANCE_ARCHIVE_RETENTION_DAYS",
    schedule="15 4 * * *",
)
def prune_subject_archives(context: JobContext) -> JobResult:
    # The archive holds everything about a person in the clear (it is meant to be handed over):
    # it is kept only as long as answering the request takes.
    directory = Path(settings.COMPLIANCE_EXPORT_DIR)
    cutoff = time.time() - settings.COMPLIANCE_ARCHIVE_RETENTION_DAYS * 86400
    old = (
        [path for path in directory.glob("subject-*.zip") if path.stat().st_mtime < cutoff]
        if directory.is_dir()
        else []
    )
    if context.dry_run:
        return JobResult(details={"would_delete": [path.name for path in old]})
    for path in old:
        path.unlink(missing_ok=True)
    details = {"deleted": [path.name for path in old], "retention_days": settings.COMPLIANCE_ARCHIVE_RETENTION_DAYS}
    return JobResult(affected=len(old), details=details)
