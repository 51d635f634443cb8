"""The jobs the platform runs, by name. Each app registers the jobs for the data it owns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet

from webconnect.jobs.models import DataKind


class LeaseLost(Exception):
    """Another worker took over this job (our lease expired); stop without touching more rows."""


@dataclass
class JobContext:
    dry_run: bool
    batch_size: int
    params: dict[str, Any]
    # Call after each batch: renews the lease (raising LeaseLost if another
    # worker took over) and pauses JOB_BATCH_PAUSE_MS to spare the database.
    checkpoint: Callable[[], None] = lambda: None


@dataclass
class JobResult:
    affected: int = 0  # rows deleted/compacted/exported (0 in a dry run)
    failed: int = 0  # rows the job met but could not process (logged, counted, skipped)
    details: dict[str, Any] = field(default_factory=dict)
    skipped_reason: str = ""  # set when the job decided not to run (disabled policy, legal hold)
    error: str = ""  # set when the job completed but found a problem to alert on (a broken audit chain)


JobFunction = Callable[[JobContext], JobResult]


def delete_in_batches(queryset: QuerySet[Any], context: JobContext) -> int:
    """Delete what `queryset` matches, `context.batch_size` rows per transaction.

    Each batch commits on its own, so a worker killed part-way leaves the rest
    for the redelivered task; `checkpoint()` renews the lease between batches.
    """
    model = queryset.model
    deleted = 0
    while ids := list(queryset.order_by("pk").values_list("pk", flat=True)[: context.batch_size]):
        deleted += model.objects.filter(pk__in=ids).delete()[1].get(model._meta.label, 0)
        context.checkpoint()
    return deleted


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    function: JobFunction
    schedule: str  # crontab "minute hour day-of-month month day-of-week", UTC
    kind: DataKind | None = None


JOBS: dict[str, Job] = {}


def register_job(
    name: str, *, description: str, schedule: str, kind: DataKind | None = None
) -> Callable[[JobFunction], JobFunction]:
    def decorate(function: JobFunction) -> JobFunction:
        JOBS[name] = Job(name=name, description=description, function=function, schedule=schedule, kind=kind)
        return function

    return decorate
