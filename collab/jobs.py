"""Co-editing's periodic jobs: compaction of update logs into snapshots, version retention."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from collab import services
from collab.models import Document, DocumentVersion
from webconnect.jobs.models import DataKind
from webconnect.jobs.registry import JobContext, JobResult, delete_in_batches, register_job
from webconnect.jobs.services import retention_policy

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


@register_job(
    "prune_document_versions",
    description="Delete automatic document versions past retention (named versions are kept)",
    schedule="5 4 * * *",
    kind=DataKind.DOCUMENT_VERSIONS,
)
def prune_document_versions(context: JobContext) -> JobResult:
    """Automatic versions (compaction snapshots) past the age, or beyond the count per document.

    Named versions are a user's deliberate checkpoints and are never pruned; the
    document's current state is its snapshot, so no version is needed to keep it.
    """
    policy = retention_policy(DataKind.DOCUMENT_VERSIONS)
    if policy is None:
        return JobResult(skipped_reason="no enabled retention policy for document versions")
    automatic = DocumentVersion.objects.filter(automatic=True)
    batches: list[QuerySet[DocumentVersion]] = []
    if policy.max_age_days is not None:
        old = Q(created_at__lt=timezone.now() - timedelta(days=policy.max_age_days))
        batches.append(automatic.filter(old))
        automatic = automatic.exclude(old)  # what the count limit then applies to
    if policy.max_count is not None:
        keep = policy.max_count
        crowded = automatic.values("document_id").annotate(n=Count("id")).filter(n__gt=keep)
        for document_id in crowded.values_list("document_id", flat=True):
            versions = automatic.filter(document_id=document_id)
            # The newest `keep` stay; everything from the next one down goes (same order as the history page).
            first_gone = versions.order_by("-created_at", "-id")[keep]
            batches.append(
                versions.filter(
                    Q(created_at__lt=first_gone.created_at) | Q(created_at=first_gone.created_at, id__lte=first_gone.pk)
                )
            )
    if context.dry_run:
        return JobResult(details={"would_delete": sum(batch.count() for batch in batches)})
    deleted = sum(delete_in_batches(batch, context) for batch in batches)
    return JobResult(affected=deleted, details={"deleted": deleted})
