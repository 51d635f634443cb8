"""REST for producers and pages: tickets, publish, history, presence; and /metrics."""

from __future__ import annotations

import ipaddress
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import serializers
from rest_framework.parsers import BaseParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webconnect.identity import principal_from_request, request_client_ip
from webconnect.realtime import metrics, protocol, services, sse, tickets

STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "too_large": 413,
    "rate_limited": 429,
    "limit_exceeded": 400,
    "internal": 500,
}


def error_response(error: protocol.ProtocolError) -> Response:
    metrics.ERRORS.labels(error.code).inc()
    data: dict[str, Any] = {"detail": error.message, "code": error.code}
    headers = {}
    if error.retry_after is not None:
        data["retry_after"] = round(error.retry_after, 3)
        headers["Retry-After"] = str(max(1, round(error.retry_after)))
    return Response(data, status=STATUS[error.code], headers=headers)


class TicketApi(APIView):
    """A one-time ticket for `?ticket=` on /ws/: single use, valid 30 seconds, bound to the caller."""

    required_scopes = ["realtime:read"]

    @extend_schema_serializer(component_name="RealtimeTicket")
    class OutputSerializer(serializers.Serializer[Any]):
        ticket = serializers.CharField()
        expires_in = serializers.IntegerField()

    @extend_schema(request=None, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        principal = principal_from_request(request)
        ticket = tickets.ticket_issue(user=request.user, auth=principal.auth)
        return Response({"ticket": ticket, "expires_in": tickets.TICKET_TTL_SECONDS}, status=201)


class PositionSerializer(serializers.Serializer[Any]):
    offset = serializers.IntegerField()
    epoch = serializers.CharField()


def _channel(channel: str) -> str:
    return protocol.check_channel(channel)


class RawBodyParser(BaseParser):
    """Hands the body over unparsed: protocol.loads applies the WebSocket path's limits to it."""

    media_type = "*/*"

    # Returns raw bytes instead of parsed data, on purpose.
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> bytes:  # type: ignore[override]
        limit = settings.REALTIME_MAX_FRAME_BYTES
        body = stream.read(limit + 1) if stream is not None else b""
        return bytes(body)


class ChannelPublishApi(APIView):
    """Publish the JSON request body as one message; answers the offset it got."""

    required_scopes = ["realtime:write"]
    parser_classes = [RawBodyParser]

    @extend_schema(
        request={"application/json": OpenApiTypes.ANY},
        responses={201: PositionSerializer},
        operation_id="channel_publish",
    )
    def post(self, request: Request, channel: str) -> Response:
        try:
            _channel(channel)
            body = request.data if isinstance(request.data, bytes) else b""
            if len(body) > settings.REALTIME_MAX_FRAME_BYTES:
                raise protocol.ProtocolError("too_large", f"body larger than {settings.REALTIME_MAX_FRAME_BYTES} bytes")
            payload = protocol.loads(body.decode("utf-8", errors="strict") if body else "null")
            position = async_to_sync(services.channel_publish)(
                principal=principal_from_request(request), channel=channel, payload=payload, source="rest"
            )
        except UnicodeDecodeError:
            return error_response(protocol.ProtocolError("bad_request", "the body must be UTF-8 JSON"))
        except protocol.ProtocolError as error:
            return error_response(error)
        return Response({"offset": position.offset, "epoch": position.epoch}, status=201)


class ChannelHistoryApi(APIView):
    required_scopes = ["realtime:read"]

    @extend_schema_serializer(component_name="ChannelHistory")
    class OutputSerializer(PositionSerializer):
        messages = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        parameters=[OpenApiParameter("limit", int, description=f"1..{protocol.HISTORY_MAX_LIMIT}, default 50")],
        responses=OutputSerializer,
        operation_id="channel_history",
    )
    def get(self, request: Request, channel: str) -> Response:
        try:
            _channel(channel)
            raw = request.query_params.get("limit", "50")
            if not raw.isdigit() or not 1 <= int(raw) <= protocol.HISTORY_MAX_LIMIT:
                raise protocol.ProtocolError("bad_request", f"limit must be 1..{protocol.HISTORY_MAX_LIMIT}")
            result = async_to_sync(services.channel_history)(
                principal=principal_from_request(request), channel=channel, limit=int(raw)
            )
        except protocol.ProtocolError as error:
            return error_response(error)
        return Response(result)


class ChannelPresenceApi(APIView):
    required_scopes = ["realtime:read"]

    @extend_schema_serializer(component_name="ChannelPresence")
    class OutputSerializer(serializers.Serializer[Any]):
        clients = serializers.ListField(child=serializers.DictField())

    @extend_schema(responses=OutputSerializer, operation_id="channel_presence")
    def get(self, request: Request, channel: str) -> Response:
        try:
            _channel(channel)
            result = async_to_sync(services.channel_presence)(
                principal=principal_from_request(request), channel=channel
            )
        except protocol.ProtocolError as error:
            return error_response(error)
        return Response(result)


class EventStreamRenderer(BaseRenderer):
    """Lets `Accept: text/event-stream` (EventSource) through DRF's negotiation; errors stay JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return protocol.dumps(data).encode()


class ChannelEventsApi(APIView):
    """The channel as Server-Sent Events (the HTTP fallback for clients without WebSockets)."""

    required_scopes = ["realtime:read"]
    renderer_classes = [JSONRenderer, EventStreamRenderer]

    @extend_schema(
        parameters=[
            OpenApiParameter("since", str, description="<epoch>:<offset> to recover from (or the Last-Event-ID header)")
        ],
        responses={(200, "text/event-stream"): OpenApiTypes.STR},
        operation_id="channel_events",
    )
    def get(self, request: Request, channel: str) -> StreamingHttpResponse | Response:
        try:
            _channel(channel)
            since = sse.parse_event_id(request.headers.get("Last-Event-ID") or request.query_params.get("since"))
            chunks = async_to_sync(sse.channel_events)(principal_from_request(request), channel, since)
        except protocol.ProtocolError as error:
            return error_response(error)
        response = StreamingHttpResponse(chunks, content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response


# --- /metrics ---------------------------------------------------------------------------------


def _ip_allowed(ip: str | None) -> bool:
    if not ip or not settings.METRICS_ALLOWED_IPS:
        return False
    address = ipaddress.ip_address(ip)
    for entry in settings.METRICS_ALLOWED_IPS:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _staff(request: HttpRequest) -> bool:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    # A staff member's bearer token works too (scrapers): OAuth2Authentication
    # validates it the same way the REST API does.
    try:
        found = OAuth2Authentication().authenticate(Request(request))
    except Exception:
        return False
    return bool(found and found[0].is_staff)


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not (_ip_allowed(request_client_ip(request)) or _staff(request)):
        return JsonResponse(
            {"detail": "Only staff or allow-listed addresses may read metrics.", "code": "forbidden"}, status=403
        )
    body, content_type = metrics.render()
    return HttpResponse(body, content_type=content_type)
