from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from policies.api.sharing import DirectoryApi

urlpatterns: list[URLPattern | URLResolver] = [
    path("api/policies/", include("policies.api.urls")),
    path("api/directory/", DirectoryApi.as_view(), name="api-directory"),
]
