from __future__ import annotations

from django.urls import path

from dashboards.api import views

urlpatterns = [
    path("", views.DashboardListApi.as_view(), name="api-dashboards"),
    path("<int:dashboard_id>/", views.DashboardDetailApi.as_view(), name="api-dashboard"),
    path("<int:dashboard_id>/widgets/", views.WidgetListApi.as_view(), name="api-dashboard-widgets"),
    path("<int:dashboard_id>/shares/", views.DashboardSharesApi.as_view(), name="api-dashboard-shares"),
    path(
        "<int:dashboard_id>/shares/<int:share_id>/",
        views.DashboardShareDetailApi.as_view(),
        name="api-dashboard-share",
    ),
    path("widgets/<int:widget_id>/", views.WidgetDetailApi.as_view(), name="api-dashboard-widget"),
    path("widgets/<int:widget_id>/series/", views.WidgetSeriesApi.as_view(), name="api-dashboard-widget-series"),
    path("ingest/", views.IngestApi.as_view(), name="api-dashboards-ingest"),
]
