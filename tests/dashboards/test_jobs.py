from __future__ import annotations

import pytest

from dashboards import jobs, selectors, services
from dashboards.models import SeriesPoint
from webconnect.jobs.models import DataKind, JobRun, RetentionPolicy
from webconnect.jobs.registry import JOBS
from webconnect.jobs.services import job_run

pytestmark = pytest.mark.django_db

HOUR_MS = 3_600_000


def test_both_jobs_are_registered() -> None:
    assert JOBS["downsample_series"].schedule
    assert JOBS["prune_series_points"].kind == DataKind.SERIES_POINTS


def test_downsampling_keeps_one_average_per_step_and_is_idempotent() -> None:
    old = (jobs.now_ms() - 30 * HOUR_MS) // 60_000 * 60_000
    services.points_store(("demo.s", "temp", old + 1000 * i, float(i)) for i in range(120))  # 2 minutes at 1/s
    services.points_store([("demo.s", "temp", jobs.now_ms(), 99.0)])  # recent: untouched
    run = job_run(name="downsample_series")
    assert run.status == JobRun.Status.SUCCEEDED, run.error
    assert run.items_affected == 118
    rows = selectors.series_query(channel="demo.s", path="temp", from_ms=old, to_ms=old + 120_000, step_ms=60_000)
    assert [(r["avg"], r["n"]) for r in rows] == [(29.5, 1), (89.5, 1)]
    assert SeriesPoint.objects.count() == 3
    again = job_run(name="downsample_series")
    assert again.items_affected == 0
    assert SeriesPoint.objects.count() == 3


def test_pruning_follows_the_retention_policy() -> None:
    services.points_store(
        [("demo.s", "temp", jobs.now_ms() - 10 * 24 * HOUR_MS, 1.0), ("demo.s", "temp", jobs.now_ms(), 2.0)]
    )
    RetentionPolicy.objects.update_or_create(
        kind=DataKind.SERIES_POINTS, defaults={"max_age_days": 7, "enabled": False}
    )
    skipped = job_run(name="prune_series_points")
    assert skipped.status == JobRun.Status.SKIPPED
    RetentionPolicy.objects.filter(kind=DataKind.SERIES_POINTS).update(enabled=True)
    dry = job_run(name="prune_series_points", dry_run=True)
    assert dry.details["would_delete"] == 1
    assert SeriesPoint.objects.count() == 2
    run = job_run(name="prune_series_points")
    assert run.items_affected == 1
    assert list(SeriesPoint.objects.values_list("value", flat=True)) == [2.0]
