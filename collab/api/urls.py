from __future__ import annotations

from django.urls import URLPattern, path

from collab.api import views

urlpatterns: list[URLPattern] = [
    path("", views.DocumentListApi.as_view(), name="api-documents"),
    path("<int:document_id>/", views.DocumentDetailApi.as_view(), name="api-document"),
    path("<int:document_id>/versions/", views.VersionListApi.as_view(), name="api-versions"),
    path(
        "<int:document_id>/versions/<int:version_id>/restore/",
        views.VersionRestoreApi.as_view(),
        name="api-version-restore",
    ),
    path("<int:document_id>/export/<str:fmt>/", views.DocumentExportApi.as_view(), name="api-export"),
    path("<int:document_id>/shares/", views.DocumentSharesApi.as_view(), name="api-document-shares"),
    path(
        "<int:document_id>/shares/<int:share_id>/",
        views.DocumentShareDetailApi.as_view(),
        name="api-document-share",
    ),
]
