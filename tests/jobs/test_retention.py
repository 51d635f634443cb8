"""Retention jobs on real data: what is past retention goes, the rest stays, legal hold wins."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from tests.jobs.helpers import days_ago, record_at
from webconnect.audit import audit_verify_chain
from webconnect.jobs.models import DataKind, JobRun, RetentionPolicy
from webconnect.jobs.services import job_run
from webconnect.models import AuditEvent

pytestmark = pytest.mark.django_db


def set_policy(kind: str, **fields: Any) -> RetentionPolicy:
    policy = RetentionPolicy.objects.get(kind=kind)
    for name, value in fields.items():
        setattr(policy, name, value)
    policy.save()
    return policy


class TestAuditRetention:
    def test_events_past_retention_go_and_the_rest_stay_with_a_verifiable_chain(self) -> None:
        old = record_at(days_ago(120), 4)
        recent = record_at(days_ago(10), 3)
        set_policy("audit_events", max_age_days=90)

        run = job_run(name="prune_audit")

        assert run.status == "succeeded" and run.items_affected == 4
        remaining = set(AuditEvent.objects.values_list("pk", flat=True))
        assert not remaining & {e.pk for e in old}
        assert {e.pk for e in recent} <= remaining
        assert AuditEvent.objects.filter(action="audit.pruned").exists()  # pruning is itself audited
        verification = audit_verify_chain()
        assert verification.ok, verification

    def test_a_dry_run_deletes_nothing_and_says_what_it_would(self) -> None:
        record_at(days_ago(400), 5)
        before = AuditEvent.objects.count()
        run = job_run(name="prune_audit", dry_run=True)
        assert run.status == "succeeded" and run.dry_run
        assert run.details["would_delete"] == 5
        assert AuditEvent.objects.count() == before

    def test_legal_hold_wins(self) -> None:
        record_at(days_ago(400), 5)
        set_policy("audit_events", max_age_days=90, legal_hold=True)
        run = job_run(name="prune_audit")
        assert run.status == "skipped" and "legal hold" in run.details["reason"]
        assert AuditEvent.objects.count() == 5

    def test_a_maximum_count_keeps_the_newest(self) -> None:
        events = record_at(days_ago(1), 6)
        set_policy("audit_events", max_age_days=None, max_count=2)
        job_run(name="prune_audit")
        survivors = list(AuditEvent.objects.exclude(action="audit.pruned").order_by("pk").values_list("pk", flat=True))
        assert survivors == [events[-2].pk, events[-1].pk]
        assert audit_verify_chain().ok

    def test_pruning_twice_is_harmless(self) -> None:
        record_at(days_ago(200), 3)
        set_policy("audit_events", max_age_days=90)
        assert job_run(name="prune_audit").items_affected == 3
        assert job_run(name="prune_audit").items_affected == 0
        assert audit_verify_chain().ok

    def test_a_disabled_policy_prunes_nothing(self) -> None:
        record_at(days_ago(400), 2)
        set_policy("audit_events", enabled=False)
        assert job_run(name="prune_audit").status == "skipped"
        assert AuditEvent.objects.count() == 2


def test_expired_tokens_past_the_grace_period_go(alice: Any, mint_token: Any) -> None:
    mint_token("alice", "realtime:read")
    mint_token("alice", "realtime:read")
    tokens = get_access_token_model().objects.order_by("pk")
    tokens.filter(pk=tokens[0].pk).update(expires=timezone.now() - timezone.timedelta(days=30))
    dry = job_run(name="prune_oauth_tokens", dry_run=True)
    assert dry.details["would_delete"]["access_tokens"] == 1
    run = job_run(name="prune_oauth_tokens")
    assert run.status == "succeeded" and run.items_affected == 1
    assert get_access_token_model().objects.count() == 1


class TestRetentionPolicyForm:
    @pytest.fixture
    def admin_client(self, client: Client, admin_user: Any) -> Client:
        client.force_login(admin_user)
        return client

    def change(self, client: Client, kind: str, **data: Any) -> Any:
        policy = RetentionPolicy.objects.get(kind=kind)
        form = {
            "kind": kind,
            "max_age_days": policy.max_age_days or "",
            "max_count": policy.max_count or "",
            "enabled": "on",
            **data,
        }
        return client.post(
            f"/admin/jobs/retentionpolicy/{policy.pk}/change/", {k: v for k, v in form.items() if v is not False}
        )

    @pytest.mark.parametrize("days", ["0", "-5"])
    def test_zero_or_negative_days_are_a_form_error(self, admin_client: Client, days: str) -> None:
        response = self.change(admin_client, "audit_events", max_age_days=days)
        assert response.status_code == 200
        assert "Ensure this value is greater than or equal to" in response.content.decode()
        assert RetentionPolicy.objects.get(kind="audit_events").max_age_days == 365

    def test_neither_age_nor_count_is_a_form_error(self, admin_client: Client) -> None:
        response = self.change(admin_client, "channel_history", max_age_days="", max_count="")
        assert "Set a maximum age, a maximum count, or both" in response.content.decode()

    def test_shortening_retention_under_legal_hold_is_refused(self, admin_client: Client) -> None:
        set_policy("audit_events", max_age_days=365, legal_hold=True)
        response = self.change(admin_client, "audit_events", max_age_days="30", legal_hold="on")
        assert "under legal hold" in response.content.decode()
        assert RetentionPolicy.objects.get(kind="audit_events").max_age_days == 365

    def test_an_administrator_sets_audit_retention_to_90_days(self, admin_client: Client) -> None:
        response = self.change(admin_client, "audit_events", max_age_days="90")
        assert response.status_code == 302
        assert RetentionPolicy.objects.get(kind="audit_events").max_age_days == 90

    def test_an_invalid_crontab_is_a_form_error(self, admin_client: Client) -> None:
        response = admin_client.post(
            "/admin/django_celery_beat/crontabschedule/add/",
            {
                "minute": "99",
                "hour": "*",
                "day_of_month": "*",
                "month_of_year": "*",
                "day_of_week": "*",
                "timezone": "UTC",
            },
        )
        assert response.status_code == 200
        assert "errorlist" in response.content.decode()

    def test_the_admin_shows_schedules_and_runs_a_dry_run(self, admin_client: Client) -> None:
        tasks = admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()
        assert "job: prune_audit" in tasks and "job: verify_audit" in tasks
        policy = RetentionPolicy.objects.get(kind=DataKind.AUDIT_EVENTS)
        admin_client.post("/admin/jobs/retentionpolicy/", {"action": "dry_run_now", "_selected_action": [policy.pk]})
        run = JobRun.objects.get(job="prune_audit")  # tests run Celery tasks eagerly
        assert run.dry_run
        assert "prune_audit" in admin_client.get("/admin/jobs/jobrun/").content.decode()


class TestRunJobCommand:
    def test_it_lists_the_jobs(self) -> None:
        out = StringIO()
        call_command("runjob", stdout=out)
        assert "prune_audit" in out.getvalue() and "export_audit" in out.getvalue()

    def test_a_dry_run_from_the_command_line(self) -> None:
        record_at(days_ago(400), 3)
        out = StringIO()
        call_command("runjob", "prune_audit", "--dry-run", stdout=out)
        report = json.loads(out.getvalue())
        assert report["status"] == "succeeded" and report["details"]["would_delete"] == 3
        assert AuditEvent.objects.count() == 3

    def test_an_unknown_job_is_a_clear_error(self) -> None:
        with pytest.raises(CommandError, match="Unknown job 'prune_everything'"):
            call_command("runjob", "prune_everything", stdout=StringIO())
