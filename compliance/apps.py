from __future__ import annotations

from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        from compliance import (
            checkpoints,
            checks,  # noqa: F401  (the start-up checks: key ids in use, the signing key)
            jobs,  # noqa: F401  (registers the key-rotation and archive jobs)
        )
        from webconnect import audit

        # Signed checkpoints every N events and on each export (webconnect/audit.py's hooks).
        audit.register_append_hook(checkpoints.on_append)
        audit.register_export_hook(checkpoints.on_export)
