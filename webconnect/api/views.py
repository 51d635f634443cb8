from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from oauth2_provider.models import AbstractAccessToken
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webconnect.api.permissions import IsStaff, TokenHasRequiredScopes
from webconnect.audit import EXPORT_FIELDS, audit_verify_chain
from webconnect.models import AuditEvent
from webconnect.selectors import audit_event_list


class MeApi(APIView):
    """Who the caller is, how they authenticated and with which scopes."""

    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer[Any]):
        id = serializers.IntegerField()
        username = serializers.CharField()
        is_staff = serializers.BooleanField()
        auth_method = serializers.CharField()
        scopes = serializers.ListField(child=serializers.CharField(), allow_null=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        token = request.auth if isinstance(request.auth, AbstractAccessToken) else None
        data = {
            "id": request.user.pk,
            "username": request.user.get_username(),
            "is_staff": request.user.is_staff,
            "auth_method": "bearer" if token else "session",
            "scopes": sorted(token.scopes) if token else None,
        }
        return Response(self.OutputSerializer(data).data)


class AuditEventsPagination(CursorPagination):
    ordering = "-id"
    page_size = 100


class AuditEventListApi(APIView):
    permission_classes = [IsStaff, TokenHasRequiredScopes]
    required_scopes = ["policies:admin"]

    @extend_schema_serializer(component_name="AuditEvent")
    class OutputSerializer(serializers.ModelSerializer[AuditEvent]):
        class Meta:
            model = AuditEvent
            fields = EXPORT_FIELDS  # the same columns as the CSV / JSON-lines export

    class FilterSerializer(serializers.Serializer[Any]):
        action = serializers.CharField(required=False)
        outcome = serializers.ChoiceField(choices=AuditEvent.Outcome.choices, required=False)
        actor = serializers.CharField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        paginator = AuditEventsPagination()
        page = paginator.paginate_queryset(audit_event_list(**filters.validated_data), request, view=self)
        return paginator.get_paginated_response(self.OutputSerializer(page, many=True).data)


class AuditVerifyApi(APIView):
    permission_classes = [IsStaff, TokenHasRequiredScopes]
    required_scopes = ["policies:admin"]

    @extend_schema_serializer(component_name="AuditChainVerification")
    class OutputSerializer(serializers.Serializer[Any]):
        ok = serializers.BooleanField()
        checked = serializers.IntegerField()
        broken_event_id = serializers.IntegerField(allow_null=True)
        reason = serializers.CharField()

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        return Response(self.OutputSerializer(audit_verify_chain()).data)
