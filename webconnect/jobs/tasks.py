"""The Celery interface to jobs: one task that runs any registered job by name."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from webconnect.celery import message_keepalive
from webconnect.jobs.services import JobLocked, job_run


@shared_task(
    bind=True,
    name="webconnect.run_job",
    acks_late=True,  # a killed worker's job is redelivered (within CELERY_VISIBILITY_TIMEOUT), not lost...
    reject_on_worker_lost=True,
    max_retries=None,  # ...and a held lease only postpones it (bounded by the lease length)
)
def run_job(
    self: Task[Any, Any], name: str, dry_run: bool = False, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    try:
        # The task id is the lease holder: a redelivered copy of this task takes its own lease straight back.
        # While it runs, the message's visibility is renewed with the lease, so only a dead worker's task returns.
        run = job_run(
            name=name,
            dry_run=dry_run,
            params=params,
            holder=f"celery:{self.request.id}",
            keepalive=message_keepalive(self.request),
        )
    except JobLocked as exc:
        raise self.retry(exc=exc, countdown=settings.JOB_LEASE_SECONDS) from exc
    except (OperationalError, InterfaceError) as exc:
        if self.request.retries >= settings.CELERY_TASK_MAX_RETRIES:
            raise
        raise self.retry(exc=exc, countdown=10 * (self.request.retries + 1)) from exc
    return {"run_id": run.pk, "status": run.status, "affected": run.items_affected}
