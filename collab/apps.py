from __future__ import annotations

from django.apps import AppConfig


class CollabConfig(AppConfig):
    name = "collab"
    verbose_name = "Documents"
