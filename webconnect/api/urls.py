from __future__ import annotations

from django.urls import path

from webconnect.api import views

urlpatterns = [
    path("me/", views.MeApi.as_view(), name="api-me"),
    path("audit/events/", views.AuditEventListApi.as_view(), name="api-audit-events"),
    path("audit/verify/", views.AuditVerifyApi.as_view(), name="api-audit-verify"),
]
