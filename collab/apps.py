from __future__ import annotations

from django.apps import AppConfig


class CollabConfig(AppConfig):
    name = "collab"
    verbose_name = "Documents"

    def ready(self) -> None:
        from collab import jobs  # noqa: F401  (registers the compaction job)
        from collab.selectors import all_document_resources
        from policies.impact import register_resources

        register_resources("Document", all_document_resources)
