from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseRedirect, StreamingHttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from webconnect.audit import audit_export_csv, audit_export_jsonl, audit_record, audit_verify_chain
from webconnect.forms import ThrottledAdminAuthenticationForm
from webconnect.models import AuditEvent, Namespace

admin.site.site_header = "webconnect administration"
admin.site.site_title = "webconnect admin"
# Sign-in throttling on the admin's login form too (the view is webconnect.views.admin_sign_in).
admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    list_display = ["id", "created_at", "action", "outcome", "actor_name", "target", "client_ip"]
    list_filter = ["outcome", "action", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["actor_name", "target", "action", "client_ip"]
    date_hierarchy = "created_at"
    actions = ["export_csv", "export_jsonl"]
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    show_full_result_count = False
    # Adds the "Verify the whole audit chain" button: verification is about the whole chain,
    # never a selection, so it is not an action.
    change_list_template = "admin/webconnect/auditevent/change_list.html"

    # The trail is append-only: nobody edits or deletes it from the admin.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def _export(self, request: HttpRequest, queryset: QuerySet[AuditEvent], fmt: str) -> StreamingHttpResponse:
        events = queryset.order_by("id")
        lines = audit_export_csv(events.iterator()) if fmt == "csv" else audit_export_jsonl(events.iterator())
        name = f"audit-{timezone.now():%Y%m%d-%H%M%S}.{'csv' if fmt == 'csv' else 'jsonl'}"
        audit_record(action="audit.export", actor=request.user, target=name, details={"format": fmt})
        response = StreamingHttpResponse(lines, content_type="text/csv" if fmt == "csv" else "application/jsonl")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.action(description="Export selected events as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> StreamingHttpResponse:
        return self._export(request, queryset, "csv")

    @admin.action(description="Export selected events as JSON lines", permissions=["view"])
    def export_jsonl(self, request: HttpRequest, queryset: QuerySet[AuditEvent]) -> StreamingHttpResponse:
        return self._export(request, queryset, "jsonl")

    def get_urls(self) -> list[URLPattern]:
        # admin_view: staff only, CSRF-protected, never cached.
        verify = path(
            "verify/", self.admin_site.admin_view(require_POST(self.verify_chain_view)), name="webconnect_audit_verify"
        )
        return [verify, *super().get_urls()]

    def verify_chain_view(self, request: HttpRequest) -> HttpResponseRedirect:
        if not self.has_view_permission(request):
            raise PermissionDenied
        result = audit_verify_chain()
        if result.ok:
            self.message_user(
                request,
                f"The audit chain verifies: {result.checked} event{'' if result.checked == 1 else 's'} checked.",
                level=messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                f"The audit chain breaks at event #{result.broken_event_id}: {result.reason}.",
                level=messages.ERROR,
            )
        return HttpResponseRedirect(reverse("admin:webconnect_auditevent_changelist"))


@admin.register(Namespace)
class NamespaceAdmin(admin.ModelAdmin[Namespace]):
    list_display = [
        "name",
        "history_size",
        "history_ttl",
        "presence",
        "join_leave",
        "client_publish",
        "anonymous_read",
        "has_schema",
    ]
    list_filter = ["presence", "join_leave", "client_publish", "anonymous_read"]
    search_fields = ["name"]
    readonly_fields = ["updated_at"]

    @admin.display(boolean=True, description="payload schema")
    def has_schema(self, obj: Namespace) -> bool:
        return obj.payload_schema is not None
