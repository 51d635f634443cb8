from __future__ import annotations

from django.contrib import admin

from dashboards.models import Dashboard, SeriesPoint, Widget


class WidgetInline(admin.StackedInline[Widget, Dashboard]):
    model = Widget
    extra = 0
    fields = ["kind", "title", "channel", "value_paths", "options"]


@admin.register(Dashboard)
class DashboardAdmin(admin.ModelAdmin[Dashboard]):
    list_display = ["title", "owner", "visibility", "system", "widget_count", "updated_at"]
    list_filter = ["visibility", "system"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    search_fields = ["title", "owner__username"]
    inlines = [WidgetInline]

    @admin.display(description="widgets")
    def widget_count(self, obj: Dashboard) -> int:
        return obj.widgets.count()


@admin.register(Widget)
class WidgetAdmin(admin.ModelAdmin[Widget]):
    list_display = ["title", "kind", "channel", "dashboard"]
    list_filter = ["kind"]
    list_select_related = ["dashboard"]
    raw_id_fields = ["dashboard"]
    search_fields = ["title", "channel"]


@admin.register(SeriesPoint)
class SeriesPointAdmin(admin.ModelAdmin[SeriesPoint]):
    list_display = ["channel", "path", "ts", "value"]
    search_fields = ["channel", "path"]
    # Millions of rows: no counting for the changelist paginator's total.
    show_full_result_count = False
