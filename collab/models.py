"""Documents: a Yjs state kept as a snapshot plus an append-only update log.

Who besides the owner may read or edit a document is a policies.ShareGrant
(a template-linked Cedar policy), not a row here.

The log is the durability boundary: an update is relayed to anyone only after
its row is committed, so whatever a client saw can be rebuilt from
`snapshot` + the rows with `id > snapshot_seq`. Compaction folds rows into the
snapshot (see services.document_compact).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Document(models.Model):
    title = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="documents")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The merged Yjs update of every log row with id <= snapshot_seq.
    snapshot = models.BinaryField(default=b"")
    snapshot_seq = models.BigIntegerField(default=0)
    # Roughly the stored bytes (exact after compaction), for display; rooms compute
    # the exact size (snapshot + log) when they load, for the size limit.
    size = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-updated_at"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title


class DocumentUpdate(models.Model):
    """One accepted Yjs update, in arrival order (the id is the sequence)."""

    id = models.BigAutoField(primary_key=True)
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="updates")
    data = models.BinaryField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["document", "id"])]

    def __str__(self) -> str:
        return f"update {self.pk} of document {self.document_id}"


class DocumentVersion(models.Model):
    """A full state at one point: named by a user, or automatic at compaction."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="versions")
    name = models.CharField(max_length=200, blank=True)
    automatic = models.BooleanField(default=False)
    state = models.BinaryField()
    seq = models.BigIntegerField(default=0)  # the last log row this state includes
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Who changed the document since the previous version (snapshot granularity).
    authors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name or f"automatic {self.created_at:%Y-%m-%d %H:%M}"
