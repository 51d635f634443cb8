"""Platform jobs. A task loads what it needs, calls one service and reports."""

from __future__ import annotations

import logging

from celery import shared_task

from webconnect.audit import audit_record, audit_verify_chain
from webconnect.models import AuditEvent

logger = logging.getLogger(__name__)


@shared_task(name="webconnect.verify_audit_chain")
def verify_audit_chain() -> dict[str, object]:
    """Verify the audit chain end to end; a break is itself recorded (and alerts)."""
    result = audit_verify_chain()
    if result.ok:
        logger.info("audit chain verified", extra={"checked": result.checked})
    else:
        logger.error("audit chain broken at event %s: %s", result.broken_event_id, result.reason)
        audit_record(
            action="audit.chain_broken",
            outcome=AuditEvent.Outcome.FAILURE,
            target=f"audit_event:{result.broken_event_id}",
            details={"reason": result.reason, "checked": result.checked},
        )
    return {"ok": result.ok, "checked": result.checked, "broken_event_id": result.broken_event_id}
