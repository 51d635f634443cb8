"""Admin: the data-subject export action on users, and the signed audit checkpoints (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import FileResponse, HttpRequest, HttpResponseBase

from compliance.models import AuditCheckpoint
from compliance.subjects import subject_export


@admin.action(description="Export personal data (one archive per user, audited)", permissions=["change"])
def export_personal_data(modeladmin: Any, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponseBase | None:
    paths = [subject_export(user=user, actor=request.user) for user in queryset]
    if len(paths) == 1:
        return FileResponse(paths[0].open("rb"), as_attachment=True, filename=paths[0].name)
    modeladmin.message_user(
        request, f"{len(paths)} archives written to the export directory: {', '.join(p.name for p in paths)}"
    )
    return None


# The user admin is django.contrib.auth's (registered before this app's admin is loaded).
_user_admin = admin.site._registry.get(get_user_model())
if _user_admin is not None:
    _user_admin.actions = [*(_user_admin.actions or []), export_personal_data]


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(admin.ModelAdmin[AuditCheckpoint]):
    list_display = ["id", "created_at", "event_id", "event_count", "reason", "key_fingerprint"]
    list_filter = ["reason"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
