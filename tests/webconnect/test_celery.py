"""The Celery app is wired: tasks run eagerly in tests and on a real worker over Redis."""

from __future__ import annotations

import time

import pytest

from tests.conftest import CeleryWorkers
from webconnect.audit import audit_record
from webconnect.celery import app
from webconnect.jobs.models import JobRun
from webconnect.jobs.tasks import run_job
from webconnect.models import AuditEvent


@pytest.mark.django_db
def test_the_verify_job_task_records_a_broken_chain() -> None:
    first = audit_record(action="test.event")
    audit_record(action="test.event")
    AuditEvent.objects.filter(pk=first.pk).update(target="forged")
    result = run_job.delay("verify_audit").get()
    assert result["status"] == "failed"
    assert JobRun.objects.get(pk=result["run_id"]).details["broken_event_id"] == first.pk
    assert AuditEvent.objects.filter(action="audit.chain_broken", target=f"audit_event:{first.pk}").exists()


def test_the_beat_scheduler_is_the_database_one() -> None:
    assert app.conf.beat_scheduler == "django_celery_beat.schedulers:DatabaseScheduler"
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1


@pytest.mark.services
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_task_from_the_redis_broker(celery_workers: CeleryWorkers) -> None:
    audit_record(action="test.event")
    worker = celery_workers.start()
    # The task writes nothing when the chain is intact, so tamper first: the
    # worker's broken-chain event proves it ran, on the shared database.
    AuditEvent.objects.update(target="forged")
    app.send_task("webconnect.run_job", args=["verify_audit"], queue=celery_workers.queue)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not AuditEvent.objects.filter(action="audit.chain_broken").exists():
        assert worker.poll() is None, "worker exited"
        time.sleep(0.2)
    assert AuditEvent.objects.filter(action="audit.chain_broken").exists()
