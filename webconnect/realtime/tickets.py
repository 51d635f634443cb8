"""Real-time tickets: a one-time, short-lived credential for `?ticket=` on a WebSocket URL.

A page that cannot set headers (a browser on another origin) mints one through
the REST API with its session or token and opens the socket with it.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.utils import timezone

from webconnect.audit import audit_record
from webconnect.identity import ConnectionAuth
from webconnect.models import AuditEvent, RealtimeTicket

TICKET_TTL_SECONDS = 30


def _digest(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def ticket_issue(*, user: Any, auth: ConnectionAuth) -> str:
    """A one-time ticket for `user`, valid TICKET_TTL_SECONDS, carrying the caller's scopes."""
    ticket = secrets.token_urlsafe(32)
    RealtimeTicket.objects.filter(expires_at__lt=timezone.now() - timedelta(minutes=5)).delete()
    RealtimeTicket.objects.create(
        digest=_digest(ticket),
        user=user,
        scopes="*" if auth.scopes is None else " ".join(sorted(auth.scopes)),
        token_id=auth.token_id,
        expires_at=timezone.now() + timedelta(seconds=TICKET_TTL_SECONDS),
    )
    return ticket


def ticket_consume(ticket: str, *, client_ip: str | None) -> tuple[Any, ConnectionAuth] | None:
    """The user and auth a ticket was issued for, once; None if unknown, used or expired."""
    if not ticket or len(ticket) > 128:
        return None
    digest = _digest(ticket)
    now = timezone.now()
    # A single conditional UPDATE: of two concurrent uses exactly one changes the row.
    used = RealtimeTicket.objects.filter(digest=digest, used_at__isnull=True, expires_at__gt=now).update(used_at=now)
    row = RealtimeTicket.objects.filter(digest=digest).first()
    if not used or row is None:
        audit_record(
            action="realtime.ticket",
            outcome=AuditEvent.Outcome.DENIED,
            target=f"user:{row.user_id}" if row else "ticket:unknown",
            client_ip=client_ip,
            details={"reason": "replayed" if row and row.used_at else "unknown or expired"},
        )
        return None
    user = get_user_model().objects.filter(pk=row.user_id, is_active=True).first()
    if user is None:
        return None
    scopes = None if row.scopes == "*" else frozenset(row.scopes.split())
    return user, ConnectionAuth(method="ticket", scopes=scopes, token_id=row.token_id, client_ip=client_ip)


aticket_consume = database_sync_to_async(ticket_consume)
