from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from collab.models import Document, DocumentVersion
from policies.selectors import shares_of


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin[Document]):
    list_display = ["title", "owner", "updated_at", "size"]
    list_select_related = ["owner"]
    search_fields = ["title", "owner__username"]
    raw_id_fields = ["owner"]
    readonly_fields = ["snapshot_seq", "size", "created_at", "updated_at", "shares"]
    exclude = ["snapshot"]

    @admin.display(description="shared with")
    def shares(self, obj: Document) -> str:
        """The document's shares (policies.ShareGrant), with links to add or revoke them there."""
        if obj.pk is None:
            return "-"
        grants = shares_of(resource_type="Document", resource_id=obj.pk)
        changelist = reverse("admin:policies_sharegrant_changelist")
        add = reverse("admin:policies_sharegrant_add") + f"?resource_type=Document&resource_id={obj.pk}"
        rows = format_html_join(
            "",
            '<li><a href="{}">{}</a>: {}</li>',
            ((reverse("admin:policies_sharegrant_change", args=[g.pk]), g.principal_label, g.role) for g in grants),
        )
        return format_html(
            '<ul style="margin:0;padding-left:1.2em">{}</ul><a href="{}">{}</a> · <a href="{}">add a share</a>',
            rows or format_html("<li>{}</li>", "nobody (only the owner and staff)"),
            f"{changelist}?resource_type=Document&resource_id={obj.pk}",
            f"{len(grants)} share(s) in Share grants",
            add,
        )


@admin.register(DocumentVersion)
class DocumentVersionAdmin(admin.ModelAdmin[DocumentVersion]):
    list_display = ["document", "name", "automatic", "created_at", "created_by"]
    list_select_related = ["document", "created_by"]
    list_filter = ["automatic"]
    exclude = ["state"]
    raw_id_fields = ["document", "created_by"]
