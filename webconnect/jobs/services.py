"""Running jobs: one at a time per job (a lease), every run recorded, failures alerted."""

from __future__ import annotations

import logging
import socket
import time
import traceback
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from webconnect.audit import audit_record
from webconnect.jobs.models import DataKind, JobLock, JobRun, RetentionPolicy
from webconnect.jobs.registry import JOBS, JobContext, JobResult, LeaseLost
from webconnect.models import AuditEvent

logger = logging.getLogger(__name__)


class UnknownJob(KeyError):
    pass


class JobLocked(Exception):
    """Another worker holds this job's lease."""


def lease_acquire(*, job: str, holder: str) -> bool:
    now = timezone.now()
    expires_at = now + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    with transaction.atomic():
        # An expired lease (its worker died) or our own (a redelivered task keeps its id) is taken over.
        taken = (
            JobLock.objects.filter(job=job)
            .filter(Q(expires_at__lt=now) | Q(holder=holder))
            .update(holder=holder, expires_at=expires_at)
        )
        if taken:
            return True
        try:
            with transaction.atomic():
                JobLock.objects.create(job=job, holder=holder, expires_at=expires_at)
            return True
        except IntegrityError:
            return False


def lease_renew(*, job: str, holder: str) -> None:
    expires_at = timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    if not JobLock.objects.filter(job=job, holder=holder).update(expires_at=expires_at):
        raise LeaseLost(job)


def lease_release(*, job: str, holder: str) -> None:
    JobLock.objects.filter(job=job, holder=holder).delete()


def retention_policy(kind: DataKind) -> RetentionPolicy | None:
    return RetentionPolicy.objects.filter(kind=kind, enabled=True).first()


def job_run(
    *, name: str, dry_run: bool = False, params: dict[str, Any] | None = None, holder: str | None = None
) -> JobRun:
    """Run one job now in this process and return its record.

    Raises JobLocked when another worker is running it. A job's own error is
    recorded on the JobRun (and audited), not raised, except for database
    connectivity errors, which the Celery task retries.
    """
    job = JOBS.get(name)
    if job is None:
        raise UnknownJob(name)
    holder = holder or f"{socket.gethostname()}:{uuid.uuid4().hex[:12]}"
    if not lease_acquire(job=name, holder=holder):
        raise JobLocked(name)
    run = JobRun.objects.create(job=name, dry_run=dry_run, started_at=timezone.now())

    def checkpoint() -> None:
        lease_renew(job=name, holder=holder)
        if settings.JOB_BATCH_PAUSE_MS:
            time.sleep(settings.JOB_BATCH_PAUSE_MS / 1000)

    context = JobContext(
        dry_run=dry_run, batch_size=settings.JOB_BATCH_SIZE, params=params or {}, checkpoint=checkpoint
    )
    retry_error: BaseException | None = None
    try:
        result = job.function(context)
        _finish(run, result)
    except LeaseLost:
        run.status = JobRun.Status.FAILED
        run.error = "lease lost: another worker took this job over"
    except Exception as exc:
        run.status = JobRun.Status.FAILED
        run.error = traceback.format_exc()[-4000:]
        logger.exception("job %s failed", name)
        if isinstance(exc, OperationalError | InterfaceError):
            retry_error = exc
    finally:
        run.finished_at = timezone.now()
        run.save()
        lease_release(job=name, holder=holder)
    if run.status == JobRun.Status.FAILED:
        _alert_failure(run)
    if retry_error is not None:
        raise retry_error
    return run


def _finish(run: JobRun, result: JobResult) -> None:
    run.items_affected = result.affected
    run.items_failed = result.failed
    run.details = result.details
    if result.skipped_reason:
        run.status = JobRun.Status.SKIPPED
        run.details = {**result.details, "reason": result.skipped_reason}
    elif result.error:
        run.status = JobRun.Status.FAILED
        run.error = result.error
    else:
        run.status = JobRun.Status.SUCCEEDED


def consecutive_failures(job: str) -> int:
    count = 0
    for status in (
        JobRun.objects.filter(job=job).exclude(status=JobRun.Status.RUNNING).values_list("status", flat=True)[:50]
    ):
        if status != JobRun.Status.FAILED:
            break
        count += 1
    return count


def _alert_failure(run: JobRun) -> None:
    first_line = (run.error.strip().splitlines() or [""])[-1][:500]
    audit_record(
        action="job.failed",
        outcome=AuditEvent.Outcome.FAILURE,
        target=f"job:{run.job}",
        details={"run_id": run.pk, "error": first_line},
    )
    failures = consecutive_failures(run.job)
    if failures >= settings.JOB_FAILURE_ALERT_THRESHOLD:
        audit_record(
            action="job.failing_repeatedly",
            outcome=AuditEvent.Outcome.FAILURE,
            target=f"job:{run.job}",
            details={"consecutive_failures": failures},
        )
