"""Reads for documents: lists, and the attributes authorization decides on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import Q, QuerySet

from collab.models import Document
from policies.selectors import shared_resource_ids
from webconnect.authorization import authorize
from webconnect.identity import Principal, Resource


def document_resource(document: Document) -> Resource:
    """The Resource the authorization service sees: the owner.

    Who else may read or edit it is not an attribute: each share is a
    template-linked policy naming this document (policies.ShareGrant).
    """
    return Resource("Document", str(document.pk), {"owner_id": document.owner_id})


def all_document_resources() -> Iterator[Resource]:
    """Every document as authorization sees it (the policy-change impact preview)."""
    for document in Document.objects.only("pk", "owner_id").order_by("pk").iterator():
        yield document_resource(document)


def document_resource_by_id(document_id: int) -> Resource | None:
    document = Document.objects.filter(pk=document_id).first()
    return None if document is None else document_resource(document)


def document_rights(principal: Principal, document: Document) -> tuple[bool, bool]:
    """(may read, may edit) through the authorization service."""
    resource = document_resource(document)
    return bool(authorize(principal, "read", resource)), bool(authorize(principal, "edit", resource))


def shared_with_filter(user: Any) -> Q:
    return Q(pk__in=shared_resource_ids(user=user, resource_type="Document"))


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
