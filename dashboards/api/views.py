"""REST for dashboards, widgets, series queries and batch ingest (scopes dashboards:read/write)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dashboards import selectors, services
from dashboards.layout import Box
from dashboards.models import Dashboard, Widget
from dashboards.validation import KINDS
from policies.api.sharing import ResourceShareDetailApi, ResourceSharesApi, ShareTarget
from webconnect.authorization import authorize
from webconnect.identity import Principal, principal_from_request
from webconnect.realtime import protocol
from webconnect.realtime.api import error_response


@contextmanager
def django_errors() -> Iterator[None]:
    """Model/service validation errors become a 400 with the field messages."""
    try:
        yield
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc


def dashboard_for(principal: Principal, dashboard_id: int, action: str) -> Dashboard:
    dashboard = Dashboard.objects.select_related("owner").filter(pk=dashboard_id).first()
    if dashboard is None:
        raise exceptions.NotFound("No such dashboard.")
    may_view, may_edit = selectors.dashboard_rights(principal, dashboard)
    if not may_view:
        raise exceptions.NotFound("No such dashboard.")  # do not reveal that it exists
    if action == "edit" and not may_edit:
        raise exceptions.PermissionDenied("You may not edit this dashboard.")
    return dashboard


def widget_for(principal: Principal, widget_id: int, action: str) -> Widget:
    widget = Widget.objects.select_related("dashboard").filter(pk=widget_id).first()
    if widget is None:
        raise exceptions.NotFound("No such widget.")
    dashboard_for(principal, widget.dashboard_id, action)
    return widget


def widget_data(principal: Principal, dashboard: Dashboard, widget: Widget, box: Box | None = None) -> dict[str, Any]:
    """A widget as a viewer may see it: without channel or paths when the channel is not readable."""
    access = selectors.channel_access(principal, widget.channel)
    box = box or selectors.widget_box(dashboard, widget)
    data: dict[str, Any] = {"id": widget.pk, "kind": widget.kind, "title": widget.title}
    data.update(x=box["x"], y=box["y"], w=box["w"], h=box["h"])
    if access.allowed:
        data.update(
            status="ok", channel=widget.channel, value_paths=widget.value_paths, options=widget.options, message=""
        )
    else:
        data.update(status=access.code, channel=None, value_paths=[], options={}, message=access.message)
    return data


def dashboard_data(principal: Principal, dashboard: Dashboard, *, with_widgets: bool) -> dict[str, Any]:
    may_edit = selectors.dashboard_rights(principal, dashboard)[1]
    data: dict[str, Any] = {
        "id": dashboard.pk,
        "title": dashboard.title,
        "owner": dashboard.owner.get_username(),
        "visibility": dashboard.visibility,
        "layout": dashboard.layout,
        "can_edit": may_edit,
        "updated_at": dashboard.updated_at,
    }
    if with_widgets:
        data["widgets"] = [widget_data(principal, dashboard, w, box) for w, box in selectors.widget_list(dashboard)]
    return data


@extend_schema_serializer(component_name="DashboardWidget")
class WidgetOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=KINDS)
    title = serializers.CharField()
    x = serializers.IntegerField(help_text="column of the left edge, 0-11")
    y = serializers.IntegerField(help_text="row of the top edge")
    w = serializers.IntegerField(help_text="width in columns, 1-12")
    h = serializers.IntegerField(help_text="height in rows, 1-6")
    status = serializers.ChoiceField(choices=["ok", "no_access", "no_channel"])
    message = serializers.CharField()
    channel = serializers.CharField(allow_null=True)
    value_paths = serializers.ListField(child=serializers.CharField(allow_blank=True))
    options = serializers.DictField()


@extend_schema_serializer(component_name="Dashboard")
class DashboardOutputSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    title = serializers.CharField()
    owner = serializers.CharField()
    visibility = serializers.CharField()
    layout = serializers.JSONField()
    can_edit = serializers.BooleanField()
    updated_at = serializers.DateTimeField()
    widgets = WidgetOutputSerializer(many=True, required=False)


class DashboardListApi(APIView):
    scope_prefix = "dashboards"

    @extend_schema_serializer(component_name="DashboardCreate")
    class InputSerializer(serializers.Serializer[Any]):
        title = serializers.CharField(max_length=200)
        visibility = serializers.ChoiceField(choices=Dashboard.Visibility.choices, default="private")

    @extend_schema(responses=DashboardOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        principal = principal_from_request(request)
        items = [dashboard_data(principal, d, with_widgets=False) for d in selectors.dashboard_list(principal)]
        return Response(DashboardOutputSerializer(items, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: DashboardOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with django_errors():
            dashboard = services.dashboard_create(owner=request.user, **data.validated_data)
        principal = principal_from_request(request)
        return Response(DashboardOutputSerializer(dashboard_data(principal, dashboard, with_widgets=True)).data, 201)


class DashboardDetailApi(APIView):
    scope_prefix = "dashboards"

    @extend_schema_serializer(component_name="DashboardUpdate")
    class InputSerializer(serializers.Serializer[Any]):
        title = serializers.CharField(max_length=200, required=False)
        visibility = serializers.ChoiceField(choices=Dashboard.Visibility.choices, required=False)
        layout = serializers.JSONField(
            required=False,
            help_text="[{id, x (0-11), y, w (1-12), h (1-6)}, ...]; items without x and y go to the first free spot",
        )

    @extend_schema(responses=DashboardOutputSerializer)
    def get(self, request: Request, dashboard_id: int) -> Response:
        principal = principal_from_request(request)
        dashboard = dashboard_for(principal, dashboard_id, "view")
        return Response(DashboardOutputSerializer(dashboard_data(principal, dashboard, with_widgets=True)).data)

    @extend_schema(request=InputSerializer, responses=DashboardOutputSerializer)
    def patch(self, request: Request, dashboard_id: int) -> Response:
        principal = principal_from_request(request)
        dashboard = dashboard_for(principal, dashboard_id, "edit")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with django_errors():
            services.dashboard_update(dashboard=dashboard, data=data.validated_data)
        return Response(DashboardOutputSerializer(dashboard_data(principal, dashboard, with_widgets=True)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, dashboard_id: int) -> Response:
        dashboard = dashboard_for(principal_from_request(request), dashboard_id, "edit")
        dashboard.delete()
        return Response(status=204)


@extend_schema_serializer(component_name="DashboardWidgetInput")
class WidgetInputSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=KINDS)
    title = serializers.CharField(max_length=200)
    channel = serializers.CharField(max_length=128)
    value_paths = serializers.ListField(child=serializers.CharField(allow_blank=True, max_length=128), default=list)
    options = serializers.DictField(default=dict)
    w = serializers.IntegerField(min_value=1, max_value=12, required=False)
    h = serializers.IntegerField(min_value=1, max_value=6, required=False)


class WidgetListApi(APIView):
    scope_prefix = "dashboards"

    @extend_schema(request=WidgetInputSerializer, responses={201: WidgetOutputSerializer})
    def post(self, request: Request, dashboard_id: int) -> Response:
        principal = principal_from_request(request)
        dashboard = dashboard_for(principal, dashboard_id, "edit")
        data = WidgetInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with django_errors():
            widget = services.widget_create(dashboard=dashboard, **data.validated_data)
        dashboard.refresh_from_db()
        return Response(WidgetOutputSerializer(widget_data(principal, dashboard, widget)).data, status=201)


class WidgetDetailApi(APIView):
    scope_prefix = "dashboards"

    @extend_schema(request=WidgetInputSerializer(partial=True), responses=WidgetOutputSerializer)
    def patch(self, request: Request, widget_id: int) -> Response:
        principal = principal_from_request(request)
        widget = widget_for(principal, widget_id, "edit")
        data = WidgetInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        with django_errors():
            services.widget_update(widget=widget, data=data.validated_data)
        return Response(WidgetOutputSerializer(widget_data(principal, widget.dashboard, widget)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, widget_id: int) -> Response:
        widget = widget_for(principal_from_request(request), widget_id, "edit")
        services.widget_delete(widget=widget)
        return Response(status=204)


class WidgetSeriesApi(APIView):
    """The widget's series over [from, to] (ms since the epoch), averaged per `step` ms in the database."""

    scope_prefix = "dashboards"

    @extend_schema_serializer(component_name="SeriesBucket")
    class BucketSerializer(serializers.Serializer[Any]):
        t = serializers.IntegerField(help_text="bucket start, ms since the epoch")
        avg = serializers.FloatField()
        min = serializers.FloatField()
        max = serializers.FloatField()
        n = serializers.IntegerField()

    @extend_schema_serializer(component_name="WidgetSeries")
    class OutputSerializer(serializers.Serializer[Any]):
        widget = serializers.IntegerField()
        step = serializers.IntegerField()
        series = serializers.DictField(child=serializers.ListField())

    @extend_schema(
        parameters=[
            OpenApiParameter("from", int, description="ms since the epoch (default: to - the widget's window)"),
            OpenApiParameter("to", int, description="ms since the epoch (default: now)"),
            OpenApiParameter("step", int, description="bucket width in ms (default: window / 300)"),
        ],
        responses=OutputSerializer,
    )
    def get(self, request: Request, widget_id: int) -> Response:
        principal = principal_from_request(request)
        widget = widget_for(principal, widget_id, "view")
        access = selectors.channel_access(principal, widget.channel)
        if not access.allowed:
            code = "forbidden" if access.code == "no_access" else "not_found"
            return error_response(protocol.ProtocolError(code, access.message))
        to_ms = _int_param(request, "to", int(time.time() * 1000))
        from_ms = _int_param(request, "from", to_ms - widget.window_seconds * 1000)
        step_ms = _int_param(request, "step", max(1000, (to_ms - from_ms) // 300))
        try:
            series = {
                path: selectors.series_query(
                    channel=widget.channel, path=path, from_ms=from_ms, to_ms=to_ms, step_ms=step_ms
                )
                for path in widget.value_paths
            }
        except selectors.QueryError as exc:
            return error_response(protocol.ProtocolError("bad_request", exc.message))
        return Response({"widget": widget.pk, "from": from_ms, "to": to_ms, "step": step_ms, "series": series})


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise serializers.ValidationError({name: f"{name!r} must be an integer (ms since the epoch)"}) from None


class IngestApi(APIView):
    """Publish many messages on one channel at once; each goes live and widget paths are recorded as points."""

    # Each message is a real-time publish, so a token needs both scopes.
    required_scopes = ["dashboards:write", "realtime:write"]

    @extend_schema_serializer(component_name="DashboardIngest")
    class InputSerializer(serializers.Serializer[Any]):
        channel = serializers.CharField(max_length=128)
        messages = serializers.ListField(child=serializers.JSONField(), min_length=1)

    @extend_schema_serializer(component_name="DashboardIngestResult")
    class OutputSerializer(serializers.Serializer[Any]):
        published = serializers.IntegerField()
        first_offset = serializers.IntegerField(allow_null=True)
        last_offset = serializers.IntegerField(allow_null=True)
        problems = serializers.ListField(child=serializers.DictField())

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        messages = data.validated_data["messages"]
        limit = services.ingest_max_batch()
        if len(messages) > limit:
            raise serializers.ValidationError({"messages": f"at most {limit} messages per batch"})
        channel = data.validated_data["channel"]
        value_paths = services.ingest_prepare(channel)
        try:
            result = async_to_sync(services.ingest_batch)(
                principal=principal_from_request(request), channel=channel, payloads=messages, value_paths=value_paths
            )
        except protocol.ProtocolError as exc:
            return error_response(exc)
        return Response(self.OutputSerializer(result).data)


# --- Shares ----------------------------------------------------------------------------


def share_target(request: Request, dashboard_id: int) -> ShareTarget:
    principal = principal_from_request(request)
    dashboard = dashboard_for(principal, dashboard_id, "view")
    if not authorize(principal, "share", selectors.dashboard_resource(dashboard)):
        raise exceptions.PermissionDenied("You may not share this dashboard.")
    return ShareTarget("Dashboard", dashboard.pk, dashboard.owner_id, "dashboard")


@extend_schema_view(delete=extend_schema(operation_id="dashboards_shares_revoke_by_name"))
class DashboardSharesApi(ResourceSharesApi):
    """Who the dashboard is shared with (owner and those with the share right only)."""

    required_scopes = ["dashboards:write"]
    resource_kwarg = "dashboard_id"

    def target(self, request: Request, resource_id: int) -> ShareTarget:
        return share_target(request, resource_id)


class DashboardShareDetailApi(ResourceShareDetailApi):
    required_scopes = ["dashboards:write"]
    resource_kwarg = "dashboard_id"

    def target(self, request: Request, resource_id: int) -> ShareTarget:
        return share_target(request, resource_id)
