"""REST for sharing: the directory the share dialog searches, and the shares of one resource.

Documents and dashboards mount `ResourceSharesApi` / `ResourceShareDetailApi`
under their own URLs (`/api/documents/{id}/shares/`, `/api/dashboards/{id}/shares/`)
and supply `target()`: load the resource and check that the caller may `share`
it. Everything else (who may be named, one role per user or group, audit,
revocation reaching live sessions) is the same for both, in policies.services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from oauth2_provider.models import AbstractAccessToken
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from policies import selectors, services
from policies.models import SHARE_TEMPLATES, ShareGrant
from webconnect.api.permissions import InsufficientScope

# A token may search the directory only if it may share something.
SHARING_SCOPES = ("docs:write", "dashboards:write")


# --- The directory ---------------------------------------------------------------------


class DirectoryThrottle(UserRateThrottle):
    """Per user (per IP when anonymous), in the shared cache: Redis in production.

    Generous for typing (the dialog waits for a pause in the typing before it
    asks), tight enough that listing every account takes a long time.
    """

    scope = "directory"

    def get_rate(self) -> str:
        return str(getattr(settings, "DIRECTORY_SEARCH_RATE", "120/minute"))


class MaySearchDirectory(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if isinstance(token, AbstractAccessToken) and not any(token.allow_scopes([s]) for s in SHARING_SCOPES):
            raise InsufficientScope([" or ".join(SHARING_SCOPES)])
        return True


@extend_schema_serializer(component_name="DirectoryEntry")
class DirectoryEntrySerializer(serializers.Serializer[Any]):
    type = serializers.ChoiceField(choices=["user", "group"])
    id = serializers.IntegerField()
    name = serializers.CharField(help_text="the username, or the group's name")
    display_name = serializers.CharField(help_text="the user's full name (or username), or the group's name")


class DirectoryApi(APIView):
    """Users and groups whose name matches `q` (at least 2 characters), best matches first, at most 10."""

    permission_classes = [IsAuthenticated, MaySearchDirectory]
    throttle_classes = [DirectoryThrottle]

    @extend_schema_serializer(component_name="DirectoryResult")
    class OutputSerializer(serializers.Serializer[Any]):
        query = serializers.CharField()
        results = DirectoryEntrySerializer(many=True)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "q", str, required=True, description=f"at least {selectors.DIRECTORY_MIN_QUERY} characters"
            )
        ],
        responses=OutputSerializer,
    )
    def get(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()[:150]
        if len(query) < selectors.DIRECTORY_MIN_QUERY:
            raise serializers.ValidationError(
                {"q": f"type at least {selectors.DIRECTORY_MIN_QUERY} characters of a name"}
            )
        entries = selectors.directory_search(query=query)
        return Response(self.OutputSerializer({"query": query, "results": entries}).data)


# --- Shares of one resource ---------------------------------------------------------


@dataclass(frozen=True)
class ShareTarget:
    """A resource the caller may share (its app checked `share` already)."""

    resource_type: str  # "Document" or "Dashboard"
    resource_id: int
    owner_id: int
    noun: str  # "document", "dashboard": for messages


@extend_schema_serializer(component_name="Share")
class ShareOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField(source="pk")
    type = serializers.SerializerMethodField()
    name = serializers.SerializerMethodField(help_text="the username, or the group's name")
    display_name = serializers.SerializerMethodField()
    role = serializers.CharField(help_text="viewer or editor (or the template's name, for a share made in the admin)")
    policy_id = serializers.CharField(source="link_id", help_text='the Cedar policy id, "share:<id>"')
    created_at = serializers.DateTimeField()
    created_by = serializers.SerializerMethodField()

    def get_type(self, grant: ShareGrant) -> str:
        return "user" if grant.user_id is not None else "group"

    def get_name(self, grant: ShareGrant) -> str:
        if grant.user is not None:
            return str(grant.user.get_username())
        return grant.group.name if grant.group is not None else grant.principal_id

    def get_display_name(self, grant: ShareGrant) -> str:
        if grant.user is not None:
            return str(grant.user.get_full_name() or grant.user.get_username())
        return self.get_name(grant)

    def get_created_by(self, grant: ShareGrant) -> str | None:
        return str(grant.created_by.get_username()) if grant.created_by is not None else None


@extend_schema_serializer(component_name="ShareCreate")
class ShareInputSerializer(serializers.Serializer[Any]):
    user = serializers.CharField(required=False, max_length=150, help_text="a username")
    group = serializers.CharField(required=False, max_length=150, help_text="a group's name")
    role = serializers.ChoiceField(choices=list(SHARE_TEMPLATES), help_text="viewer (read) or editor (read and edit)")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("group" in attrs):
            raise serializers.ValidationError("name exactly one of a user or a group")
        return attrs


def _user_named(username: str) -> Any:
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise serializers.ValidationError({"user": f"there is no user named {username!r}"})
    return user


def _group_named(name: str) -> Group:
    group = Group.objects.filter(name=name).first()
    if group is None:
        raise serializers.ValidationError({"group": f"there is no group named {name!r}"})
    return group


def _service_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    return serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


class _SharesBase(APIView):
    # The URL keyword naming the resource's id, e.g. "document_id".
    resource_kwarg = "resource_id"

    def target(self, request: Request, resource_id: int) -> ShareTarget:
        """Load the resource and check that the caller may share it (NotFound / PermissionDenied)."""
        raise NotImplementedError

    def target_of(self, request: Request, kwargs: dict[str, Any]) -> ShareTarget:
        return self.target(request, int(kwargs[self.resource_kwarg]))


class ResourceSharesApi(_SharesBase):
    """The shares of one resource: list, add (or change a role), revoke by name."""

    @extend_schema(responses=ShareOutputSerializer(many=True))
    def get(self, request: Request, **kwargs: Any) -> Response:
        target = self.target_of(request, kwargs)
        grants = selectors.shares_of(resource_type=target.resource_type, resource_id=target.resource_id)
        return Response(ShareOutputSerializer(grants, many=True).data)

    @extend_schema(request=ShareInputSerializer, responses={201: ShareOutputSerializer})
    def post(self, request: Request, **kwargs: Any) -> Response:
        target = self.target_of(request, kwargs)
        data = ShareInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = _user_named(data.validated_data["user"]) if "user" in data.validated_data else None
        group = _group_named(data.validated_data["group"]) if "group" in data.validated_data else None
        if user is not None and user.pk == target.owner_id:
            raise serializers.ValidationError(
                {"user": f"{user.get_username()} owns this {target.noun} and has every right already"}
            )
        try:
            grant = services.share_grant(
                resource_type=target.resource_type,
                resource_id=target.resource_id,
                role=data.validated_data["role"],
                user=user,
                group=group,
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise _service_errors(exc) from exc
        return Response(ShareOutputSerializer(grant).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[
            OpenApiParameter("user", str, description="revoke this user's share"),
            OpenApiParameter("group", str, description="revoke this group's share"),
        ],
        responses={204: None},
    )
    def delete(self, request: Request, **kwargs: Any) -> Response:
        target = self.target_of(request, kwargs)
        username, group_name = request.query_params.get("user"), request.query_params.get("group")
        if (username is None) == (group_name is None):
            raise serializers.ValidationError("name exactly one of ?user= or ?group=")
        user = get_user_model().objects.filter(username=username).first() if username is not None else None
        group = Group.objects.filter(name=group_name).first() if group_name is not None else None
        revoked = 0
        if user is not None or group is not None:
            revoked = services.share_revoke(
                resource_type=target.resource_type,
                resource_id=target.resource_id,
                user=user,
                group=group,
                actor=request.user,
            )
        if not revoked:
            raise exceptions.NotFound(f"this {target.noun} is not shared with {username or group_name}")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ResourceShareDetailApi(_SharesBase):
    """One share of one resource, by its id: revoke it."""

    @extend_schema(responses={204: None})
    def delete(self, request: Request, share_id: int, **kwargs: Any) -> Response:
        target = self.target_of(request, kwargs)
        grant = (
            ShareGrant.objects.select_related("template", "user", "group")
            .filter(pk=share_id, resource_type=target.resource_type, resource_id=str(target.resource_id))
            .first()
        )
        if grant is None:
            raise exceptions.NotFound("No such share.")
        services.share_grant_delete(grant=grant, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
