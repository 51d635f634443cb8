"""Co-editing's periodic job: compaction of update logs into snapshots."""

from __future__ import annotations

import logging

from django.db.models import F

from collab import services
from collab.models import Document
from webconnect.jobs.models import DataKind
from webconnect.jobs.registry import JobContext, JobResult, register_job

logger = logging.getLogger(__name__)


def documents_to_compact() -> list[int]:
    return list(Document.objects.filter(updates__id__gt=F("snapshot_seq")).values_list("id", flat=True).distinct())


@register_job(
    "compact_documents",
    description="Fold document update logs into snapshots (also runs when a document's last editor leaves)",
    schedule="*/10 * * * *",
    kind=DataKind.DOCUMENT_UPDATES,
)
def compact_documents_job(context: JobContext) -> JobResult:
    result = JobResult()
    pending = documents_to_compact()
    result.details["pending"] = len(pending)
    if context.dry_run:
        return result
    for document_id in pending:
        try:
            if services.document_compact(document_id=document_id):
                result.affected += 1
        except Exception:
            logger.exception("compaction of document %s failed", document_id)
            result.failed += 1
        context.checkpoint()
    return result
