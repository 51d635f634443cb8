"""Verification, export and alerting jobs; leases and failure records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from tests.jobs.helpers import days_ago, record_at
from webconnect.audit import audit_record
from webconnect.jobs.registry import JobContext, JobResult, register_job
from webconnect.jobs.services import JobLocked, job_run, lease_acquire, lease_release
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db


def test_tampering_fails_the_verify_job_names_the_row_and_raises_the_alert() -> None:
    events = [audit_record(action="test.event") for _ in range(4)]
    assert job_run(name="verify_audit").status == "succeeded"
    assert b"webconnect_audit_chain_ok 1.0" in generate_latest()

    AuditEvent.objects.filter(pk=events[1].pk).update(actor_name="someone else")
    run = job_run(name="verify_audit")

    assert run.status == "failed"
    assert f"event #{events[1].pk}" in run.error
    assert AuditEvent.objects.filter(action="audit.chain_broken", target=f"audit_event:{events[1].pk}").exists()
    assert b"webconnect_audit_chain_ok 0.0" in generate_latest()


def test_export_writes_json_lines_csv_and_a_manifest_with_boundary_hashes(settings: Any, tmp_path: Path) -> None:
    settings.AUDIT_EXPORT_DIR = str(tmp_path)
    record_at(days_ago(3), 2)
    inside = record_at(days_ago(2), 3)
    record_at(days_ago(1), 2)
    day = days_ago(2).date().isoformat()

    run = job_run(name="export_audit", params={"since": day})

    assert run.status == "succeeded" and run.items_affected == 3
    stem = run.details["stem"]
    manifest = json.loads((tmp_path / f"{stem}.manifest.json").read_text())
    assert manifest["count"] == 3
    assert manifest["first_event_id"] == inside[0].pk and manifest["prev_hash"] == inside[0].prev_hash
    assert manifest["last_hash"] == inside[-1].hash
    jsonl = (tmp_path / f"{stem}.jsonl").read_bytes()
    assert hashlib.sha256(jsonl).hexdigest() == manifest["files"][f"{stem}.jsonl"]
    assert [json.loads(line)["id"] for line in jsonl.splitlines()] == [e.pk for e in inside]
    assert len((tmp_path / f"{stem}.csv").read_text().splitlines()) == 4


def test_a_bad_export_period_fails_clearly() -> None:
    run = job_run(name="export_audit", params={"since": "yesterday-ish"})
    assert run.status == "failed" and "ISO date" in run.error


def test_a_job_runs_in_one_worker_at_a_time() -> None:
    assert lease_acquire(job="verify_audit", holder="worker-a")
    with pytest.raises(JobLocked):
        job_run(name="verify_audit", holder="worker-b")
    # The same holder (a redelivered task keeps its id) takes its lease back.
    assert job_run(name="verify_audit", holder="worker-a").status == "succeeded"
    lease_release(job="verify_audit", holder="worker-a")


def test_an_expired_lease_is_taken_over(settings: Any) -> None:
    settings.JOB_LEASE_SECONDS = -1  # every lease is already expired
    assert lease_acquire(job="verify_audit", holder="dead-worker")
    assert job_run(name="verify_audit", holder="new-worker").status == "succeeded"


def test_repeated_failures_raise_an_alert_and_a_metric() -> None:
    @register_job("always_fails", description="test", schedule="0 0 * * *")
    def always_fails(context: JobContext) -> JobResult:
        raise RuntimeError("disk on fire")

    try:
        for _ in range(3):
            run = job_run(name="always_fails")
            assert run.status == "failed" and "disk on fire" in run.error
        assert AuditEvent.objects.filter(action="job.failed", target="job:always_fails").count() == 3
        assert AuditEvent.objects.filter(action="job.failing_repeatedly", target="job:always_fails").exists()
        assert b'webconnect_job_consecutive_failures{job="always_fails"} 3.0' in generate_latest()
    finally:
        from webconnect.jobs.registry import JOBS

        JOBS.pop("always_fails")
