"""Real Celery workers on Redis and PostgreSQL: one killed with SIGKILL in the middle of a prune; a job
longer than the broker's visibility timeout that is not run twice."""

from __future__ import annotations

import signal
import time

import pytest
from django.db import connection
from django.test import override_settings

from tests.conftest import CeleryWorkers
from tests.jobs.helpers import days_ago, seed_chain
from webconnect.audit import audit_verify_chain
from webconnect.celery import app
from webconnect.jobs.models import JobRun, RetentionPolicy
from webconnect.jobs.services import job_run
from webconnect.models import AuditEvent

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]


# A prune long enough to be killed in the middle, and a killed worker's task back in 3 s, not an hour
# (its lease, 2 s, lapses first; running jobs renew both every 2/3 s).
WORKER_ENV = {
    "JOB_BATCH_SIZE": "50",
    "JOB_BATCH_PAUSE_MS": "40",
    "JOB_LEASE_SECONDS": "2",
    "CELERY_VISIBILITY_TIMEOUT": "3",
    "CELERY_UNACKED_RESTORE_INTERVAL": "1",
    "CELERY_UNACKED_RESTORE_THROTTLE": "1",
}


def wait_for(condition: object, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(message)


def test_a_killed_worker_s_prune_is_redelivered_and_completes_without_harm(celery_workers: CeleryWorkers) -> None:
    assert connection.vendor == "postgresql"
    seed_chain(2000, days_ago(200))  # past retention
    seed_chain(30, days_ago(5))  # inside it
    RetentionPolicy.objects.filter(kind="audit_events").update(max_age_days=90)

    first = celery_workers.start(**WORKER_ENV)
    app.send_task("webconnect.run_job", args=["prune_audit"], queue=celery_workers.queue)
    wait_for(lambda: AuditEvent.objects.count() <= 1700, 60, "the prune never started")
    first.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    first.wait(timeout=10)
    left = AuditEvent.objects.count()
    assert 30 < left < 2030, "the kill should land in the middle of the prune"
    assert audit_verify_chain().ok  # every committed batch left a verifiable chain

    celery_workers.start(**WORKER_ENV)
    wait_for(
        lambda: JobRun.objects.filter(job="prune_audit", status="succeeded").exists(),
        40,
        "the redelivered prune did not complete",
    )
    # Measured here (JOB_LEASE_SECONDS=2, visibility 3 s, restore scan every 1 s): 4-6 s from the
    # kill to the redelivered prune's success (README, Jobs: "Safety").
    print(f"killed worker's prune redelivered and finished {time.monotonic() - killed_at:.1f} s after SIGKILL")

    survivors = AuditEvent.objects.exclude(action__in=["audit.pruned", "job.lost"])
    assert survivors.count() == 30
    assert not survivors.filter(created_at__lt=days_ago(90)).exists()
    verification = audit_verify_chain()
    assert verification.ok, verification
    # The killed run's record is no longer "running" forever: the redelivered task marked it lost.
    killed_run = JobRun.objects.get(job="prune_audit", status="lost")
    assert not JobRun.objects.filter(job="prune_audit", status="running").exists()
    lost = AuditEvent.objects.get(action="job.lost")
    assert lost.target == "job:prune_audit" and lost.details["run_id"] == killed_run.pk


def test_a_killed_worker_s_run_is_swept_to_lost_when_no_new_run_comes(celery_workers: CeleryWorkers) -> None:
    seed_chain(2000, days_ago(200))
    RetentionPolicy.objects.filter(kind="audit_events").update(max_age_days=90)
    # The task goes to a queue no worker reads after the kill: only the sweep can find the run.
    worker = celery_workers.start(**WORKER_ENV)
    app.send_task("webconnect.run_job", args=["prune_audit"], queue=celery_workers.queue)
    wait_for(lambda: AuditEvent.objects.count() <= 1700, 60, "the prune never started")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert JobRun.objects.get(job="prune_audit").status == "running"

    with override_settings(JOB_LEASE_SECONDS=2):
        assert job_run(name="sweep_lost_job_runs").items_affected == 0  # the lease has not lapsed yet
        time.sleep(2.5)
        assert job_run(name="sweep_lost_job_runs").items_affected == 1
    assert JobRun.objects.get(job="prune_audit").status == "lost"
    assert AuditEvent.objects.filter(action="job.lost", details__found_by="sweep").count() == 1


def test_a_job_longer_than_the_visibility_timeout_is_not_redelivered_while_it_runs(
    celery_workers: CeleryWorkers,
) -> None:
    seed_chain(2000, days_ago(200))
    RetentionPolicy.objects.filter(kind="audit_events").update(max_age_days=90)
    # About 100 batches of 20 with 100 ms pauses: over 10 s, more than three visibility timeouts.
    slow = {**WORKER_ENV, "JOB_BATCH_SIZE": "20", "JOB_BATCH_PAUSE_MS": "100"}
    celery_workers.start(**slow)
    celery_workers.start(**slow)  # idle, and would take the message if it became visible again
    started = time.monotonic()
    app.send_task("webconnect.run_job", args=["prune_audit"], queue=celery_workers.queue)
    wait_for(
        lambda: JobRun.objects.filter(job="prune_audit", status="succeeded").exists(),
        90,
        "the prune did not complete",
    )
    assert time.monotonic() - started > 9, "the job should outlast the 3 s visibility timeout"
    time.sleep(4)  # a redelivered copy would show up as a second run by now
    assert list(JobRun.objects.filter(job="prune_audit").values_list("status", flat=True)) == ["succeeded"]
    assert not AuditEvent.objects.filter(action="job.lost").exists()
    assert not AuditEvent.objects.exclude(action="audit.pruned").exists()
