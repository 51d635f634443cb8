from __future__ import annotations

from django.urls import path

from dashboards.api import views

urlpatterns = [
    path("", views.DashboardListApi.as_view(), name="api-dashboards"),
    path("<int:dashboard_id>/", views.DashboardDetailApi.as_view(), name="api-dashboard"),
    path("<int:dashboard_id>/widgets/", views.WidgetListApi.as_view(), name="api-dashboard-widgets"),
    path("widgets/<int:widget_id>/", views.WidgetDetailApi.as_view(), name="api-dashboard-widget"),
    path("widgets/<int:widget_id>/series/", views.WidgetSeriesApi.as_view(), name="api-dashboard-widget-series"),
    path("ingest/", views.IngestApi.as_view(), name="api-dashboards-ingest"),
]
