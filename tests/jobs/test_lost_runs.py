"""A run whose worker died (its lease lapsed) becomes `lost`: found by the next run or by the sweep."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import generate_latest

from webconnect.jobs.models import JobLock, JobRun
from webconnect.jobs.services import LeaseKeeper, consecutive_failures, job_run, lease_acquire, lease_release
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db


def dead_run(job: str, *, holder: str = "celery:dead", lease_expired: bool = True, minutes_ago: int = 10) -> JobRun:
    """A run left `running` by a killed worker, with the lease it held."""
    expires = timezone.now() + timedelta(seconds=-5 if lease_expired else 60)
    JobLock.objects.update_or_create(job=job, defaults={"holder": holder, "expires_at": expires})
    return JobRun.objects.create(job=job, started_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_the_next_run_finds_the_lapsed_lease_marks_the_old_run_lost_and_proceeds() -> None:
    old = dead_run("verify_audit")

    new = job_run(name="verify_audit", holder="celery:next")

    assert new.status == "succeeded"
    old.refresh_from_db()
    assert old.status == "lost"
    assert old.finished_at is not None and "found by the next run" in old.error
    lost = AuditEvent.objects.get(action="job.lost")
    assert lost.target == "job:verify_audit" and lost.outcome == "failure"
    assert lost.details == {"run_id": old.pk, "started_at": old.started_at.isoformat(), "found_by": "next run"}


def test_a_redelivered_task_marks_its_own_killed_run_lost() -> None:
    # A redelivered message keeps its task id, hence the holder: it takes its lease back.
    old = dead_run("verify_audit", holder="celery:same", lease_expired=False)

    assert job_run(name="verify_audit", holder="celery:same").status == "succeeded"

    old.refresh_from_db()
    assert old.status == "lost"


def test_a_live_lease_keeps_another_worker_out_and_its_run_stays_running() -> None:
    live = dead_run("verify_audit", holder="celery:alive", lease_expired=False)

    assert job_run(name="sweep_lost_job_runs").details == {"lost": 0}

    live.refresh_from_db()
    assert live.status == "running"
    assert not AuditEvent.objects.filter(action="job.lost").exists()


def test_the_sweep_marks_lost_runs_of_jobs_nobody_runs_again() -> None:
    expired = dead_run("prune_audit")
    no_lease = JobRun.objects.create(job="export_audit", started_at=timezone.now() - timedelta(hours=1))
    live = dead_run("verify_audit", holder="celery:alive", lease_expired=False)

    sweep = job_run(name="sweep_lost_job_runs")

    assert sweep.status == "succeeded" and sweep.items_affected == 2
    assert set(JobRun.objects.filter(status="lost").values_list("pk", flat=True)) == {expired.pk, no_lease.pk}
    live.refresh_from_db()
    assert live.status == "running"
    assert set(AuditEvent.objects.filter(action="job.lost").values_list("target", flat=True)) == {
        "job:prune_audit",
        "job:export_audit",
    }
    assert job_run(name="sweep_lost_job_runs").items_affected == 0  # nothing twice
    assert job_run(name="sweep_lost_job_runs", dry_run=True).items_affected == 0


def test_lost_runs_count_as_failures_in_alerts_and_metrics_but_not_as_a_chain_verdict() -> None:
    assert job_run(name="verify_audit").status == "succeeded"
    for _ in range(3):
        dead_run("verify_audit", minutes_ago=0)  # each started after the success
        job_run(name="sweep_lost_job_runs")

    assert consecutive_failures("verify_audit") == 3
    assert AuditEvent.objects.filter(action="job.failing_repeatedly", target="job:verify_audit").exists()
    metrics = generate_latest()
    assert b'webconnect_job_consecutive_failures{job="verify_audit"} 3.0' in metrics
    assert b"webconnect_audit_chain_ok 1.0" in metrics  # a lost run verified nothing


def test_the_admin_lists_and_filters_lost_runs(admin_client: Any) -> None:
    run = dead_run("prune_audit")
    job_run(name="sweep_lost_job_runs")

    page = admin_client.get("/admin/jobs/jobrun/?status__exact=lost")

    assert page.status_code == 200
    body = page.content.decode()
    assert f"/admin/jobs/jobrun/{run.pk}/change/" in body
    assert "Lost" in body
    detail = admin_client.get(f"/admin/jobs/jobrun/{run.pk}/change/").content.decode()
    assert "its worker stopped renewing" in detail


@pytest.mark.django_db(transaction=True)
def test_the_lease_keeper_renews_the_lease_and_the_broker_message_while_the_job_runs(settings: Any) -> None:
    settings.JOB_LEASE_SECONDS = 0.6  # a beat every 0.2 s
    assert lease_acquire(job="verify_audit", holder="me")
    first = JobLock.objects.get(job="verify_audit").expires_at
    beats: list[float] = []
    keeper = LeaseKeeper(job="verify_audit", holder="me", keepalive=lambda: beats.append(time.monotonic()))
    keeper.start()
    try:
        time.sleep(1.0)
    finally:
        keeper.halt()
    assert not keeper.is_alive()
    assert len(beats) >= 3
    assert JobLock.objects.get(job="verify_audit").expires_at > first
    lease_release(job="verify_audit", holder="me")


@pytest.mark.django_db(transaction=True)
def test_the_lease_keeper_stops_when_another_worker_took_the_lease(settings: Any) -> None:
    settings.JOB_LEASE_SECONDS = 0.6
    JobLock.objects.create(job="verify_audit", holder="someone else", expires_at=timezone.now())
    keeper = LeaseKeeper(job="verify_audit", holder="me", keepalive=lambda: None)
    keeper.start()
    keeper.join(timeout=3)
    assert not keeper.is_alive()
