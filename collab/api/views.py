"""REST for documents: CRUD, versions, restore, export, shares (scopes docs:read / docs:write)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collab import convert, selectors, services
from collab.models import Document, DocumentVersion
from collab.views import EXPORT_TYPES, export_document
from policies.api.sharing import ResourceShareDetailApi, ResourceSharesApi, ShareTarget
from webconnect.authorization import authorize
from webconnect.identity import principal_from_request


def document_for(request: Request, document_id: int, action: str) -> Document:
    document = Document.objects.select_related("owner").filter(pk=document_id).first()
    if document is None:
        raise exceptions.NotFound("No such document.")
    resource = selectors.document_resource(document)
    principal = principal_from_request(request)
    if not authorize(principal, action, resource):
        if not authorize(principal, "read", resource):
            raise exceptions.NotFound("No such document.")
        raise exceptions.PermissionDenied(f"You may not {action} this document.")
    return document


class DocumentOutput(serializers.ModelSerializer[Document]):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    can_edit = serializers.SerializerMethodField()
    websocket_path = serializers.SerializerMethodField()

    class Meta:
        model = Document
        fields = ["id", "title", "owner", "created_at", "updated_at", "can_edit", "websocket_path"]

    def get_can_edit(self, document: Document) -> bool:
        return bool(authorize(self.context["principal"], "edit", selectors.document_resource(document)))

    def get_websocket_path(self, document: Document) -> str:
        return f"/ws/docs/{document.pk}"


class VersionOutput(serializers.ModelSerializer[DocumentVersion]):
    created_by = serializers.CharField(source="created_by.get_username", read_only=True, default=None)

    class Meta:
        model = DocumentVersion
        fields = ["id", "name", "automatic", "created_at", "created_by", "authors"]


class DocumentListApi(APIView):
    scope_prefix = "docs"

    @extend_schema_serializer(component_name="DocumentCreate")
    class InputSerializer(serializers.Serializer[Any]):
        title = serializers.CharField(max_length=200)
        markdown = serializers.CharField(required=False, allow_blank=True, max_length=2 * 1024 * 1024)

    @extend_schema(responses=DocumentOutput(many=True))
    def get(self, request: Request) -> Response:
        documents = selectors.documents_visible(request.user)
        search = request.query_params.get("q", "").strip()
        if search:
            documents = documents.filter(title__icontains=search)
        context = {"principal": principal_from_request(request)}
        return Response(DocumentOutput(documents[:500], many=True, context=context).data)

    @extend_schema(request=InputSerializer, responses={201: DocumentOutput})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        markdown = data.validated_data.get("markdown")
        document = services.document_create(
            owner=request.user,
            title=data.validated_data["title"],
            initial=(lambda fragment: convert.markdown_into(fragment, markdown)) if markdown else None,
        )
        context = {"principal": principal_from_request(request)}
        return Response(DocumentOutput(document, context=context).data, status=status.HTTP_201_CREATED)


class DocumentDetailApi(APIView):
    scope_prefix = "docs"

    @extend_schema_serializer(component_name="DocumentUpdate")
    class InputSerializer(serializers.Serializer[Any]):
        title = serializers.CharField(max_length=200)

    @extend_schema(responses=DocumentOutput)
    def get(self, request: Request, document_id: int) -> Response:
        document = document_for(request, document_id, "read")
        return Response(DocumentOutput(document, context={"principal": principal_from_request(request)}).data)

    @extend_schema(request=InputSerializer, responses=DocumentOutput)
    def patch(self, request: Request, document_id: int) -> Response:
        document = document_for(request, document_id, "edit")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.document_rename(document=document, title=data.validated_data["title"])
        return Response(DocumentOutput(document, context={"principal": principal_from_request(request)}).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, document_id: int) -> Response:
        document = document_for(request, document_id, "delete")
        services.document_delete(document=document)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionListApi(APIView):
    scope_prefix = "docs"

    @extend_schema_serializer(component_name="VersionCreate")
    class InputSerializer(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=200)

    @extend_schema(responses=VersionOutput(many=True))
    def get(self, request: Request, document_id: int) -> Response:
        document = document_for(request, document_id, "read")
        versions = DocumentVersion.objects.filter(document=document).select_related("created_by")[:500]
        return Response(VersionOutput(versions, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: VersionOutput})
    def post(self, request: Request, document_id: int) -> Response:
        document = document_for(request, document_id, "edit")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.version_create(document=document, user=request.user, name=data.validated_data["name"])
        return Response(VersionOutput(version).data, status=status.HTTP_201_CREATED)


class VersionRestoreApi(APIView):
    scope_prefix = "docs"

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT})
    def post(self, request: Request, document_id: int, version_id: int) -> Response:
        document = document_for(request, document_id, "edit")
        version = DocumentVersion.objects.filter(pk=version_id, document=document).first()
        if version is None:
            raise exceptions.NotFound("No such version.")
        services.version_restore(document=document, version=version, user=request.user)
        return Response({"restored": version.pk})


class DocumentExportApi(APIView):
    scope_prefix = "docs"

    @extend_schema(responses={(200, "text/markdown"): OpenApiTypes.STR, (200, "text/html"): OpenApiTypes.STR})
    def get(self, request: Request, document_id: int, fmt: str) -> HttpResponse:
        if fmt not in EXPORT_TYPES:
            raise exceptions.NotFound("Unknown export format: use md, html or json.")
        document = document_for(request, document_id, "read")
        body, content_type, name = export_document(document, fmt)
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


def share_target(request: Request, document_id: int) -> ShareTarget:
    document = document_for(request, document_id, "share")
    return ShareTarget("Document", document.pk, document.owner_id, "document")


@extend_schema_view(delete=extend_schema(operation_id="documents_shares_revoke_by_name"))
class DocumentSharesApi(ResourceSharesApi):
    """Who the document is shared with (owner and those with the share right only)."""

    required_scopes = ["docs:write"]
    resource_kwarg = "document_id"

    def target(self, request: Request, resource_id: int) -> ShareTarget:
        return share_target(request, resource_id)


class DocumentShareDetailApi(ResourceShareDetailApi):
    required_scopes = ["docs:write"]
    resource_kwarg = "document_id"

    def target(self, request: Request, resource_id: int) -> ShareTarget:
        return share_target(request, resource_id)
