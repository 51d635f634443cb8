"""Compliance jobs: key rotation (and, below, data-subject archive retention)."""

from __future__ import annotations

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
