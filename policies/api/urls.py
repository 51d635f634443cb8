from __future__ import annotations

from django.urls import path

from policies.api import views

urlpatterns = [
    path("evaluate/", views.PolicyEvaluateApi.as_view(), name="api-policies-evaluate"),
    path("impact/", views.PolicyImpactApi.as_view(), name="api-policies-impact"),
]
