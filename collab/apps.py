from __future__ import annotations

from django.apps import AppConfig


class CollabConfig(AppConfig):
    name = "collab"
    verbose_name = "Documents"

    def ready(self) -> None:
        from collab import jobs  # noqa: F401  (registers the compaction job)
        from collab.models import Document, DocumentUpdate, DocumentVersion
        from collab.selectors import all_document_resources
        from policies.impact import register_resources
        from webconnect import encryption
        from webconnect.encryption_stores import BinaryColumn

        # Document content encrypted at rest (collab/services.py seals and opens it).
        encryption.register_store("collab.snapshot", lambda: BinaryColumn(Document, "snapshot"))
        encryption.register_store("collab.update", lambda: BinaryColumn(DocumentUpdate, "data"))
        encryption.register_store("collab.version", lambda: BinaryColumn(DocumentVersion, "state"))
        # Documents are resources a policy change's impact preview evaluates.
        register_resources("Document", all_document_resources)
