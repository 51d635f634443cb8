"""Jobs over series points: downsampling old raw points and retention pruning."""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import transaction
from django.db.models import Avg, Count, ExpressionWrapper, F, IntegerField, Value

from dashboards.models import SeriesPoint
from webconnect.jobs.models import DataKind
from webconnect.jobs.registry import JobContext, JobResult, delete_in_batches, register_job
from webconnect.jobs.services import retention_policy

DAY_MS = 86_400_000


def now_ms() -> int:
    return int(time.time() * 1000)


def downsample_window(*, channel: str, path: str, start_ms: int, end_ms: int, step_ms: int) -> int:
    """Replace the raw points of one series in [start, end) by one average per `step_ms`; rows removed."""
    bucket = ExpressionWrapper(F("ts") / Value(step_ms), output_field=IntegerField())
    window = SeriesPoint.objects.filter(channel=channel, path=path, ts__gte=start_ms, ts__lt=end_ms)
    with transaction.atomic():
        rows = list(window.annotate(bucket=bucket).values("bucket").annotate(avg=Avg("value"), n=Count("id")))
        if all(row["n"] <= 1 for row in rows):
            return 0  # already one point per step: nothing to gain
        before = window.count()
        window.delete()
        SeriesPoint.objects.bulk_create(
            [SeriesPoint(channel=channel, path=path, ts=row["bucket"] * step_ms, value=row["avg"]) for row in rows],
            batch_size=1000,
        )
    return before - len(rows)


@register_job(
    "downsample_series",
    description="Average dashboard series points older than a day into one point per minute",
    schedule="20 * * * *",
)
def downsample_series(context: JobContext) -> JobResult:
    older_than_ms = int(context.params.get("older_than_hours", 24)) * 3_600_000
    step_ms = int(context.params.get("step_seconds", 60)) * 1000
    lookback_ms = int(context.params.get("lookback_hours", 48)) * 3_600_000
    # Whole steps, so a later run's window starts on a bucket boundary.
    end = (now_ms() - older_than_ms) // step_ms * step_ms
    start = end - lookback_ms
    series = list(SeriesPoint.objects.filter(ts__gte=start, ts__lt=end).values_list("channel", "path").distinct())
    if context.dry_run:
        return JobResult(details={"series": len(series), "from": start, "to": end})
    removed = 0
    for channel, path in series:
        removed += downsample_window(channel=channel, path=path, start_ms=start, end_ms=end, step_ms=step_ms)
        context.checkpoint()
    return JobResult(affected=removed, details={"series": len(series), "removed": removed, "step_ms": step_ms})


@register_job(
    "prune_series_points",
    description="Delete dashboard series points past their retention",
    schedule="40 3 * * *",
    kind=DataKind.SERIES_POINTS,
)
def prune_series_points(context: JobContext) -> JobResult:
    policy = retention_policy(DataKind.SERIES_POINTS)
    if policy is None:
        return JobResult(skipped_reason="no enabled retention policy for series points")
    if policy.legal_hold:
        return JobResult(skipped_reason="series points are under legal hold")
    if policy.max_age_days is None:
        return JobResult(skipped_reason="the retention policy sets no maximum age")
    cutoff = now_ms() - int(timedelta(days=policy.max_age_days).total_seconds() * 1000)
    old = SeriesPoint.objects.filter(ts__lt=cutoff)
    if context.dry_run:
        return JobResult(details={"would_delete": old.count(), "before_ts": cutoff})
    deleted = delete_in_batches(old, context)
    return JobResult(affected=deleted, details={"deleted": deleted, "before_ts": cutoff})
