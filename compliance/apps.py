from __future__ import annotations

from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from compliance import (
            checks,  # noqa: F401  (the start-up check of encryption key ids)
            jobs,  # noqa: F401  (registers the key-rotation and archive jobs)
        )
