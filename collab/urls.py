from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path

from collab import views

app_name = "collab"

urlpatterns: list[URLPattern | URLResolver] = [
    path("docs/", views.document_list, name="list"),
    path("docs/import/", views.document_import, name="import"),
    path("docs/<int:document_id>/", views.editor, name="editor"),
    path("docs/<int:document_id>/rename/", views.document_rename, name="rename"),
    path("docs/<int:document_id>/delete/", views.document_delete, name="delete"),
    path("docs/<int:document_id>/share/", views.document_share, name="share"),
    path("docs/<int:document_id>/history/", views.document_history, name="history"),
    path("docs/<int:document_id>/versions/<int:version_id>/", views.version_preview, name="version"),
    path("docs/<int:document_id>/versions/<int:version_id>/restore/", views.version_restore, name="restore"),
    path("docs/<int:document_id>/export.<str:fmt>", views.document_export, name="export"),
    path("api/documents/", include("collab.api.urls")),
]
