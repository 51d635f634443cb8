"""Celery tasks: interfaces only; the work is in collab.services."""

from __future__ import annotations

from celery import shared_task

from collab import services
from collab.jobs import documents_to_compact


@shared_task(acks_late=True)
def compact_document(document_id: int) -> bool:
    """Fold one document's update log into its snapshot (safe to run twice, or concurrently)."""
    return services.document_compact(document_id=document_id)


def compact_all() -> int:
    """Every document with a log beyond its snapshot; returns how many were compacted."""
    return sum(1 for document_id in documents_to_compact() if services.document_compact(document_id=document_id))


@shared_task(acks_late=True)
def compact_documents() -> int:
    """Periodic: compact every document with pending log rows."""
    return compact_all()
