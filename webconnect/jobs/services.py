"""Running jobs: one at a time per job (a lease), every run recorded, failures alerted."""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction
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


class LeaseKeeper(threading.Thread):
    """Renews a running job's lease (and its broker message) from a thread, every third of the lease.

    Checkpoints renew the lease only between batches, and some jobs (verify_audit,
    export_audit) have none: without this a live job's lease would lapse and it
    would be taken for dead. The thread dies with its process, so a lapsed lease
    means the worker is gone, not that a batch was slow. `keepalive` renews the
    task's message at the broker so a long job is not redelivered while it runs.
    """

    def __init__(self, *, job: str, holder: str, keepalive: Callable[[], None] | None = None) -> None:
        super().__init__(name=f"lease:{job}", daemon=True)
        self.job, self.holder, self.keepalive = job, holder, keepalive
        self.interval = max(settings.JOB_LEASE_SECONDS / 3, 0.2)
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.wait(self.interval):
                try:
                    lease_renew(job=self.job, holder=self.holder)
                except LeaseLost:
                    return  # the job's own next checkpoint raises it and stops the job
                except DatabaseError:
                    logger.warning("could not renew the lease of job %s", self.job, exc_info=True)
                if self.keepalive is not None:
                    try:
                        self.keepalive()
                    except Exception:
                        logger.warning("could not renew the broker message of job %s", self.job, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def halt(self) -> None:
        self._halt.set()
        self.join(timeout=10)


def job_runs_mark_lost(*, job: str, found_by: str, exclude_run_id: int | None = None) -> list[JobRun]:
    """Mark `job`'s `running` runs whose lease lapsed as lost, audit each (`job.lost`), and return them.

    A live run always holds an unexpired lease (its LeaseKeeper renews it), so a
    running record without one belongs to a dead worker. Either the caller holds
    the job's lease itself (then every other running run is dead; `exclude_run_id`
    is its own), or it is the sweep, which leaves a job with a live lease alone
    (its holder marks older runs when it starts) and reads the lease under a row
    lock, so a worker taking the lease over meanwhile waits for it.
    """
    now = timezone.now()
    with transaction.atomic():
        lease = JobLock.objects.select_for_update().filter(job=job).first()
        candidates = JobRun.objects.select_for_update().filter(job=job, status=JobRun.Status.RUNNING)
        if exclude_run_id is not None:
            candidates = candidates.exclude(pk=exclude_run_id)
        elif lease is not None and lease.expires_at >= now:
            return []
        else:
            # With no lease row at all, a worker may create one (and its run) while we look.
            candidates = candidates.filter(started_at__lt=now)
        lost = list(candidates)
        for run in lost:
            run.status = JobRun.Status.LOST
            run.finished_at = now
            run.error = f"lost: its worker stopped renewing the job's lease (found by the {found_by})"
            run.save(update_fields=["status", "finished_at", "error"])
    for run in lost:
        logger.warning("job %s: run %s lost (its worker died mid-run)", job, run.pk)
        audit_record(
            action="job.lost",
            outcome=AuditEvent.Outcome.FAILURE,
            target=f"job:{job}",
            details={"run_id": run.pk, "started_at": run.started_at.isoformat(), "found_by": found_by},
        )
    if lost:
        _alert_repeated_failures(job)
    return lost


def job_runs_sweep_lost() -> int:
    """Mark lost runs of every job, even one that never runs again; returns how many."""
    jobs = set(JobRun.objects.filter(status=JobRun.Status.RUNNING).values_list("job", flat=True))
    return sum(len(job_runs_mark_lost(job=job, found_by="sweep")) for job in sorted(jobs))


def retention_policy(kind: DataKind) -> RetentionPolicy | None:
    return RetentionPolicy.objects.filter(kind=kind, enabled=True).first()


def job_run(
    *,
    name: str,
    dry_run: bool = False,
    params: dict[str, Any] | None = None,
    holder: str | None = None,
    keepalive: Callable[[], None] | None = None,
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
    keeper = LeaseKeeper(job=name, holder=holder, keepalive=keepalive)
    keeper.start()
    # We hold the lease, so any other running record of this job is a dead worker's.
    job_runs_mark_lost(job=name, found_by="next run", exclude_run_id=run.pk)

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
        keeper.halt()
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
        if status not in (JobRun.Status.FAILED, JobRun.Status.LOST):
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
    _alert_repeated_failures(run.job)


def _alert_repeated_failures(job: str) -> None:
    failures = consecutive_failures(job)
    if failures >= settings.JOB_FAILURE_ALERT_THRESHOLD:
        audit_record(
            action="job.failing_repeatedly",
            outcome=AuditEvent.Outcome.FAILURE,
            target=f"job:{job}",
            details={"consecutive_failures": failures},
        )
