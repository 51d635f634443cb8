from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from webconnect import views
from webconnect.realtime import api as realtime_api

accounts_patterns = [
    path("login/", views.sign_in, name="login"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password_change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("password_reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("password_reset/done/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/", include(accounts_patterns)),
    # Before admin.site.urls, so "admin:login" (same path) is answered by the throttled view.
    path("admin/login/", views.admin_sign_in, name="admin-login"),
    path("admin/", admin.site.urls),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/", include("webconnect.api.urls")),
    path("api/", include("webconnect.realtime.api_urls")),
    path("metrics", realtime_api.metrics_view, name="metrics"),
    path("", include("collab.urls")),
    path("", include("dashboards.urls")),
    path("", include("policies.urls")),
    path("", include("federation.urls")),
    path("api/schema/", views.api_schema, name="api-schema"),
    path("api/docs/", views.api_docs, name="api-docs"),
]
