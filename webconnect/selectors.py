from __future__ import annotations

from django.db.models import QuerySet

from webconnect.models import AuditEvent


def audit_event_list(
    *, action: str | None = None, outcome: str | None = None, actor: str | None = None
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if action:
        events = events.filter(action=action)
    if outcome:
        events = events.filter(outcome=outcome)
    if actor:
        events = events.filter(actor_name=actor)
    return events
