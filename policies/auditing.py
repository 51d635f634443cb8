"""Audit events written from inside authorization, without ever waiting long for the chain lock.

`audit_record` appends under a row lock on the chain head. A decision can be
made while another transaction holds that lock and waits for the decision (a
service that audits, then notifies live sessions, which re-authorize from
another thread): waiting there would deadlock. So on PostgreSQL the append
gives up after AUDIT_LOCK_TIMEOUT and the event is dropped with a warning (the
aggregation counts it into the next event for the same key).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import DatabaseError, connection, transaction

from webconnect.audit import audit_record

logger = logging.getLogger(__name__)

AUDIT_LOCK_TIMEOUT = "200ms"


def audit_without_waiting(**fields: Any) -> bool:
    """audit_record(**fields); False when the chain was busy or the database failed."""

    postgres = connection.vendor == "postgresql"
    try:
        with transaction.atomic():
            if postgres:
                with connection.cursor() as cursor:
                    # SET LOCAL lives until the end of the (outer) transaction: put it back.
                    cursor.execute(f"SET LOCAL lock_timeout = '{AUDIT_LOCK_TIMEOUT}'")
            audit_record(**fields)
            if postgres:
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout TO DEFAULT")
    except DatabaseError:
        logger.warning("audit event %s not written (chain busy or database error)", fields.get("action"), exc_info=True)
        return False
    return True
