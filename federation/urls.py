from __future__ import annotations

from django.urls import path

from federation import views

app_name = "federation"

urlpatterns = [
    path("oidc/authenticate/", views.OIDCSignInView.as_view(), name="oidc-authenticate"),
    path("oidc/callback/", views.OIDCCallbackView.as_view(), name="oidc-callback"),
]
