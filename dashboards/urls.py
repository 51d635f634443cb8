from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from dashboards import views

app_name = "dashboards"

urlpatterns: list[URLPattern | URLResolver] = [
    path("dashboards/", views.dashboard_list, name="list"),
    path("dashboards/<int:dashboard_id>/", views.dashboard_detail, name="detail"),
    path("api/dashboards/", include("dashboards.api.urls")),
]
