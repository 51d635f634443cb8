"""The audit trail: a tamper-evident chain, read-only in the admin, exportable."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client

from webconnect.audit import audit_record, audit_verify_chain
from webconnect.models import AuditEvent


def record_some(count: int = 5) -> list[AuditEvent]:
    return [audit_record(action="test.event", target=f"thing:{i}", details={"n": i}) for i in range(count)]


@pytest.mark.django_db
class TestChain:
    def test_an_untouched_chain_verifies(self) -> None:
        record_some(5)
        result = audit_verify_chain()
        assert result.ok and result.checked == 5

    def test_editing_one_stored_event_names_that_event(self) -> None:
        events = record_some(5)
        AuditEvent.objects.filter(pk=events[2].pk).update(target="thing:forged")
        result = audit_verify_chain()
        assert not result.ok
        assert result.broken_event_id == events[2].pk
        assert "edited" in result.reason

    def test_editing_details_is_detected_too(self) -> None:
        events = record_some(3)
        AuditEvent.objects.filter(pk=events[1].pk).update(details={"n": 99})
        assert audit_verify_chain().broken_event_id == events[1].pk

    def test_removing_an_event_names_the_one_after_the_gap(self) -> None:
        events = record_some(5)
        AuditEvent.objects.filter(pk=events[2].pk).delete()
        result = audit_verify_chain()
        assert not result.ok and result.broken_event_id == events[3].pk

    def test_cutting_events_off_the_end_is_detected(self) -> None:
        events = record_some(5)
        AuditEvent.objects.filter(pk__gte=events[3].pk).delete()
        result = audit_verify_chain()
        assert not result.ok and "end" in result.reason

    def test_secrets_never_reach_the_trail(self) -> None:
        event = audit_record(action="test.secret", details={"password": "hunter2", "token": "abc", "ok": 1})
        event.refresh_from_db()
        assert event.details == {"password": "[redacted]", "token": "[redacted]", "ok": 1}


@pytest.mark.django_db
class TestAdmin:
    def test_the_trail_is_read_only_in_the_admin(self, client: Client, admin_user: Any) -> None:
        client.force_login(admin_user)
        event = audit_record(action="test.event")
        assert client.get("/admin/webconnect/auditevent/").status_code == 200
        assert client.get("/admin/webconnect/auditevent/add/").status_code == 403
        assert client.post(f"/admin/webconnect/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
        assert AuditEvent.objects.filter(pk=event.pk).exists()

    def test_admin_changes_are_audited(self, client: Client, admin_user: Any) -> None:
        client.force_login(admin_user)
        response = client.post("/admin/auth/group/add/", {"name": "editors"})
        assert response.status_code == 302
        event = AuditEvent.objects.get(action="admin.add")
        assert event.actor_name == "root"
        assert "editors" in event.target

    @pytest.mark.parametrize(
        ("action", "content_type"), [("export_csv", "text/csv"), ("export_jsonl", "application/jsonl")]
    )
    def test_events_export_as_csv_and_json_lines(
        self, client: Client, admin_user: Any, action: str, content_type: str
    ) -> None:
        client.force_login(admin_user)
        events = record_some(3)
        response = client.post(
            "/admin/webconnect/auditevent/", {"action": action, "_selected_action": [e.pk for e in events]}
        )
        assert response.status_code == 200
        assert response["Content-Type"] == content_type
        body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
        if action == "export_jsonl":
            rows = [json.loads(line) for line in body.splitlines()]
            assert [row["hash"] for row in rows] == [e.hash for e in events]
        else:
            lines = body.splitlines()
            assert lines[0].startswith("id,created_at,actor_id")
            assert len(lines) == 4
        assert AuditEvent.objects.filter(action="audit.export").exists()

    def test_the_verify_button_reports_a_broken_chain_without_a_selection(
        self, client: Client, admin_user: Any
    ) -> None:
        client.force_login(admin_user)
        events = record_some(3)
        AuditEvent.objects.filter(pk=events[0].pk).update(outcome="failure")
        response = client.post("/admin/webconnect/auditevent/verify/", follow=True)
        assert response.redirect_chain[-1][0] == "/admin/webconnect/auditevent/"
        assert f"breaks at event #{events[0].pk}".encode() in response.content

    def test_the_verify_button_is_post_only_csrf_protected_and_staff_only(
        self, client: Client, admin_user: Any, alice: Any
    ) -> None:
        client.force_login(alice)  # not staff: sent to the admin's sign-in
        refused = client.post("/admin/webconnect/auditevent/verify/")
        assert refused.status_code == 302 and "/admin/login/" in refused["Location"]
        client.force_login(admin_user)
        assert client.get("/admin/webconnect/auditevent/verify/").status_code == 405
        strict = Client(enforce_csrf_checks=True)
        strict.force_login(admin_user)
        assert strict.post("/admin/webconnect/auditevent/verify/").status_code == 403


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_on_postgresql_keep_one_unbroken_chain() -> None:
    assert connection.vendor == "postgresql"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                audit_record(action="test.concurrent", target=f"writer:{n}:{i}")
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    result = audit_verify_chain()
    assert result.ok, result
    assert result.checked == 8 * 15
    assert Group.objects.count() == 0  # the transactional test left nothing else behind
