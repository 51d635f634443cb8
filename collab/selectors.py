"""Reads for documents: lists, and the attributes authorization decides on."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from collab.models import Document, DocumentShare
from webconnect.authorization import authorize
from webconnect.identity import Principal, Resource


def document_resource(document: Document) -> Resource:
    """The Resource the authorization service sees: owner, editors and viewers (groups expanded)."""
    editors: set[int] = set()
    viewers: set[int] = set()
    for share in DocumentShare.objects.filter(document=document).prefetch_related("group__user_set"):
        target = editors if share.role == DocumentShare.EDITOR else viewers
        if share.user_id is not None:
            target.add(share.user_id)
        elif share.group is not None:
            target.update(user.pk for user in share.group.user_set.all())
    return Resource(
        "Document",
        str(document.pk),
        {"owner_id": document.owner_id, "editor_ids": sorted(editors), "viewer_ids": sorted(viewers - editors)},
    )


def document_resource_by_id(document_id: int) -> Resource | None:
    document = Document.objects.filter(pk=document_id).first()
    return None if document is None else document_resource(document)


def document_rights(principal: Principal, document: Document) -> tuple[bool, bool]:
    """(may read, may edit) through the authorization service."""
    resource = document_resource(document)
    return bool(authorize(principal, "read", resource)), bool(authorize(principal, "edit", resource))


def shared_with_filter(user: Any) -> Q:
    return Q(shares__user=user) | Q(shares__group__in=user.groups.all())


def documents_owned(user: Any, search: str = "") -> QuerySet[Document]:
    qs = Document.objects.filter(owner=user).select_related("owner")
    return qs.filter(title__icontains=search) if search else qs


def documents_shared_with(user: Any, search: str = "") -> QuerySet[Document]:
    qs = Document.objects.filter(shared_with_filter(user)).exclude(owner=user).distinct().select_related("owner")
    return qs.filter(title__icontains=search) if search else qs


def documents_visible(user: Any) -> QuerySet[Document]:
    if user.is_staff:
        return Document.objects.all().select_related("owner")
    return Document.objects.filter(Q(owner=user) | shared_with_filter(user)).distinct().select_related("owner")
