from __future__ import annotations

from django.contrib import admin

from collab.models import Document, DocumentShare, DocumentVersion


class DocumentShareInline(admin.TabularInline[DocumentShare, Document]):
    model = DocumentShare
    extra = 0
    raw_id_fields = ["user", "group"]


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin[Document]):
    list_display = ["title", "owner", "updated_at", "size"]
    list_select_related = ["owner"]
    search_fields = ["title", "owner__username"]
    raw_id_fields = ["owner"]
    readonly_fields = ["snapshot_seq", "size", "created_at", "updated_at"]
    exclude = ["snapshot"]
    inlines = [DocumentShareInline]


@admin.register(DocumentVersion)
class DocumentVersionAdmin(admin.ModelAdmin[DocumentVersion]):
    list_display = ["document", "name", "automatic", "created_at", "created_by"]
    list_select_related = ["document", "created_by"]
    list_filter = ["automatic"]
    exclude = ["state"]
    raw_id_fields = ["document", "created_by"]
