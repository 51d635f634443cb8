"""Document pages: list, editor (with the share dialog), history, export/import."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_http_methods, require_POST
from pycrdt import XmlFragment

from collab import convert, selectors, services
from collab.models import Document, DocumentVersion
from webconnect.authorization import authorize
from webconnect.identity import principal_from_request

MAX_IMPORT_BYTES = 2 * 1024 * 1024


class TitleForm(forms.Form):
    title = forms.CharField(max_length=200)


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A Markdown file (.md), at most 2 MB.")

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError("The file is larger than 2 MB.")
        try:
            upload.text = upload.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise forms.ValidationError("The file is not UTF-8 text.") from exc
        return upload


class VersionForm(forms.Form):
    name = forms.CharField(max_length=200)


def _document_for(request: HttpRequest, document_id: int, action: str) -> Document:
    document = get_object_or_404(Document.objects.select_related("owner"), pk=document_id)
    if not authorize(principal_from_request(request), action, selectors.document_resource(document)):
        if not authorize(principal_from_request(request), "read", selectors.document_resource(document)):
            raise Http404("No such document.")  # do not reveal that it exists
        raise PermissionDenied(f"You may not {action} this document.")
    return document


@login_required
@require_http_methods(["GET", "POST"])
def document_list(request: HttpRequest) -> HttpResponse:
    form = TitleForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        document = services.document_create(owner=request.user, title=form.cleaned_data["title"])
        return redirect("collab:editor", document_id=document.pk)
    search = request.GET.get("q", "").strip()[:200]
    return render(
        request,
        "collab/document_list.html",
        {
            "form": form,
            "import_form": ImportForm(),
            "search": search,
            "mine": selectors.documents_owned(request.user, search)[:200],
            "shared": selectors.documents_shared_with(request.user, search)[:200],
        },
    )


@login_required
@require_POST
def document_import(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("collab:list")
    upload = form.cleaned_data["file"]
    title = convert.markdown_title(upload.text) or (upload.name or "Imported").rsplit(".", 1)[0]
    document = services.document_create(
        owner=request.user, title=title, initial=lambda fragment: convert.markdown_into(fragment, upload.text)
    )
    messages.success(request, f"Imported “{document.title}”.")
    return redirect("collab:editor", document_id=document.pk)


@login_required
def editor(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _document_for(request, document_id, "read")
    resource = selectors.document_resource(document)
    principal = principal_from_request(request)
    can_edit = bool(authorize(principal, "edit", resource))
    can_share = bool(authorize(principal, "share", resource))
    config = {"documentId": document.pk, "canEdit": can_edit, "userName": request.user.get_username()}
    return render(
        request,
        "collab/editor.html",
        {
            "document": document,
            "can_edit": can_edit,
            "share_dialog": share_dialog(document) if can_share else None,
            "config": config,
        },
    )


@login_required
@require_POST
def document_rename(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _document_for(request, document_id, "edit")
    form = TitleForm(request.POST)
    if form.is_valid():
        services.document_rename(document=document, title=form.cleaned_data["title"])
    else:
        messages.error(request, "A title is required (at most 200 characters).")
    if request.POST.get("next") == "list":
        return redirect("collab:list")
    return redirect("collab:editor", document_id=document.pk)


@login_required
@require_http_methods(["GET", "POST"])
def document_delete(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _document_for(request, document_id, "delete")
    if request.method == "POST":
        title = document.title
        services.document_delete(document=document)
        messages.success(request, f"Deleted “{title}”.")
        return redirect("collab:list")
    return render(request, "collab/document_delete.html", {"document": document})


@login_required
def document_share(request: HttpRequest, document_id: int) -> HttpResponse:
    """The old share page: sharing is a dialog on the document page now."""
    document = _document_for(request, document_id, "share")
    return redirect(reverse("collab:editor", args=[document.pk]) + "#share")


def share_dialog(document: Document) -> dict[str, Any]:
    """What the share dialog partial (templates/sharing/share_dialog.html) needs."""
    return {
        "noun": "document",
        "title": document.title,
        "owner": document.owner.get_username(),
        "shares_url": reverse("collab:api-document-shares", args=[document.pk]),
    }


@login_required
@require_http_methods(["GET", "POST"])
def document_history(request: HttpRequest, document_id: int) -> HttpResponse:
    document = _document_for(request, document_id, "read")
    can_edit = bool(authorize(principal_from_request(request), "edit", selectors.document_resource(document)))
    form = VersionForm(request.POST or None)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied("You may not edit this document.")
        if form.is_valid():
            services.version_create(document=document, user=request.user, name=form.cleaned_data["name"])
            messages.success(request, "Version saved.")
            return redirect("collab:history", document_id=document.pk)
    versions = DocumentVersion.objects.filter(document=document).select_related("created_by")[:200]
    return render(
        request,
        "collab/history.html",
        {"document": document, "versions": versions, "form": form, "can_edit": can_edit},
    )


@login_required
def version_preview(request: HttpRequest, document_id: int, version_id: int) -> HttpResponse:
    document = _document_for(request, document_id, "read")
    version = get_object_or_404(DocumentVersion, pk=version_id, document=document)
    fragment = services.load_doc(services.version_state(version)).get(services.FRAGMENT, type=XmlFragment)
    body = convert.to_html(convert.to_json(fragment))
    inner = body.split("<body>\n", 1)[-1].rsplit("\n</body>", 1)[0]
    can_edit = bool(authorize(principal_from_request(request), "edit", selectors.document_resource(document)))
    return render(
        request,
        "collab/version_preview.html",
        {"document": document, "version": version, "content": inner, "can_edit": can_edit},
    )


@login_required
@require_POST
def version_restore(request: HttpRequest, document_id: int, version_id: int) -> HttpResponse:
    document = _document_for(request, document_id, "edit")
    version = get_object_or_404(DocumentVersion, pk=version_id, document=document)
    services.version_restore(document=document, version=version, user=request.user)
    messages.success(request, f"Restored “{version}” as a new change.")
    return redirect("collab:editor", document_id=document.pk)


EXPORT_TYPES = {
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "json": "application/json",
}


def export_document(document: Document, fmt: str) -> tuple[bytes, str, str]:
    """(body, content type, file name) of the document's current content."""
    state = services.document_state(document_id=document.pk)
    fragment = services.load_doc(state).get(services.FRAGMENT, type=XmlFragment)
    tree = convert.to_json(fragment)
    if fmt == "md":
        body = convert.to_markdown(tree)
    elif fmt == "html":
        body = convert.to_html(tree, document.title)
    else:
        body = json.dumps(tree, indent=2)
    name = f"{slugify(document.title) or 'document'}.{fmt}"
    return body.encode("utf-8"), EXPORT_TYPES[fmt], name


@login_required
def document_export(request: HttpRequest, document_id: int, fmt: str) -> HttpResponseBase:
    if fmt not in EXPORT_TYPES:
        raise Http404("Unknown export format.")
    document = _document_for(request, document_id, "read")
    body, content_type, name = export_document(document, fmt)
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
