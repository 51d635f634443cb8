from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import cedar
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
        }
        return Response(self.OutputSerializer(output).data)
