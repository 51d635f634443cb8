"""A real Celery worker on Redis and PostgreSQL, killed with SIGKILL in the middle of a prune."""

from __future__ import annotations

import signal
import time

import pytest
from django.db import connection

from tests.conftest import CeleryWorkers
from tests.jobs.helpers import days_ago, seed_chain
from webconnect.audit import audit_verify_chain
from webconnect.celery import app
from webconnect.jobs.models import JobRun, RetentionPolicy
from webconnect.models import AuditEvent

pytestmark = [
    pytest.mark.services,
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored"),
]


# A prune long enough to be killed in the middle, and a killed worker's task back in 3 s, not an hour.
WORKER_ENV = {
    "JOB_BATCH_SIZE": "50",
    "JOB_BATCH_PAUSE_MS": "40",
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

    survivors = AuditEvent.objects.exclude(action="audit.pruned")
    assert survivors.count() == 30
    assert not survivors.filter(created_at__lt=days_ago(90)).exists()
    verification = audit_verify_chain()
    assert verification.ok, verification
    assert JobRun.objects.filter(job="prune_audit", status="running").count() == 1  # the killed run's record
