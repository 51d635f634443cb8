from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import cedar, services
from policies.simulator import SimulationError, principal_for, simulate
from webconnect.api.permissions import IsStaff, TokenHasRequiredScopes


class PolicyEvaluateApi(APIView):
    """The policy simulator: would this user (or token) be allowed this action on this resource?"""

    permission_classes = [IsStaff, TokenHasRequiredScopes]
    required_scopes = ["policies:admin"]

    @extend_schema_serializer(component_name="PolicyEvaluateInput")
    class InputSerializer(serializers.Serializer[Any]):
        username = serializers.CharField(required=False, allow_blank=True, default="")
        token = serializers.CharField(required=False, allow_blank=True, default="", write_only=True)
        action = serializers.ChoiceField(choices=list(cedar.ACTIONS))
        resource_type = serializers.ChoiceField(choices=list(cedar.RESOURCE_TYPES))
        resource_id = serializers.CharField(max_length=255)
        attrs = serializers.DictField(required=False, default=dict)
        client_ip = serializers.IPAddressField(required=False, allow_null=True, default=None)
        at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        groups = serializers.ListField(
            child=serializers.CharField(max_length=150),
            required=False,
            allow_null=True,
            default=None,
            help_text="evaluate as a member of exactly these groups (the user's own, or someone signed in)",
        )

    @extend_schema_serializer(component_name="PolicyDecision")
    class OutputSerializer(serializers.Serializer[Any]):
        allowed = serializers.BooleanField()
        policies = serializers.ListField(child=serializers.CharField())
        errors = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]
        reason = serializers.CharField()
        principal = serializers.CharField()
        policy_version = serializers.IntegerField()
        explanation = serializers.JSONField(
            help_text="determining (name, text, effect), no_permit_matched, closest_permits (name, text)"
        )

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            principal = principal_for(
                username=data["username"], token=data["token"], client_ip=data["client_ip"], groups=data["groups"]
            )
        except SimulationError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        result = simulate(
            principal=principal,
            action=data["action"],
            resource_type=data["resource_type"],
            resource_id=data["resource_id"],
            attrs=data["attrs"],
            at=data["at"],
        )
        decision = result.decision
        output = {
            "allowed": decision.allowed,
            "policies": list(decision.policies),
            "errors": list(decision.errors),
            "reason": decision.reason,
            "principal": result.principal,
            "policy_version": result.version,
            "explanation": result.explanation.as_json() if result.explanation else {},
        }
        return Response(self.OutputSerializer(output).data)


class _FileBody(BaseParser):
    """The body as it came (JSON or YAML, parsed by the importer's own reader)."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return bytes(stream.read()) if stream is not None else b""


class PolicyImpactApi(APIView):
    """What a proposed policy set (an export file, JSON or YAML) would change, before importing it."""

    parser_classes = [_FileBody]
    permission_classes = [IsStaff, TokenHasRequiredScopes]
    required_scopes = ["policies:admin"]

    @extend_schema(
        request={"application/json": OpenApiTypes.OBJECT, "application/yaml": OpenApiTypes.STR},
        responses={200: OpenApiTypes.OBJECT},
        description=(
            'The body is a policies file as exported (`"format": "webconnect-policies"`). The answer lists '
            "the decisions that change (`groups`: gains and loses per principal and resource kind, with counts "
            "and examples), `by_principal`, `live_subscriptions_ending`, and `evaluated` (counts; `sampled` with a "
            "note when the set was too large to evaluate whole). Nothing is saved."
        ),
    )
    def post(self, request: Request) -> Response:
        try:
            result = services.policies_import_impact(content=cast(bytes, request.data))
        except DjangoValidationError as exc:
            raise ValidationError({"detail": "the proposed set is not valid", "errors": exc.messages}) from None
        return Response(result.as_json())
