from __future__ import annotations

from datetime import datetime, timedelta
from unittest import mock

from django.utils import timezone

from webconnect.audit import audit_record, event_hash
from webconnect.models import AuditChainHead, AuditEvent


def days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


def record_at(when: datetime, count: int = 1, action: str = "test.event") -> list[AuditEvent]:
    """Audit events written as if at `when` (the hash covers the time, so it is set at write)."""
    with mock.patch("django.utils.timezone.now", return_value=when):
        return [audit_record(action=action, target=f"item:{i}") for i in range(count)]


def seed_chain(count: int, when: datetime) -> None:
    """Append `count` valid chained events dated `when`, quickly (bulk insert)."""
    head, _ = AuditChainHead.objects.get_or_create(pk=1)
    prev = head.last_hash
    rows = []
    for i in range(count):
        fields = {
            "prev_hash": prev,
            "created_at": when + timedelta(microseconds=i),
            "actor_id": None,
            "actor_name": "",
            "action": "test.bulk",
            "target": f"bulk:{i}",
            "outcome": "success",
            "client_ip": None,
            "details": {},
        }
        prev = event_hash(**fields)
        rows.append(AuditEvent(hash=prev, **fields))
    AuditEvent.objects.bulk_create(rows, batch_size=1000)
    head.last_hash = prev
    head.event_count += count
    head.save()
