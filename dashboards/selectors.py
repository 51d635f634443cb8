"""Reads: dashboards a user may see, access to widget channels, downsampled series."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Avg, Count, ExpressionWrapper, F, IntegerField, Max, Min, Q, QuerySet, Value

from dashboards import layout
from dashboards.layout import Box
from dashboards.models import Dashboard, SeriesPoint, Widget
from dashboards.ops import OPS_CHANNEL
from dashboards.validation import NUMERIC_KINDS
from policies.selectors import shared_resource_ids
from webconnect.authorization import authorize
from webconnect.identity import Principal, Resource
from webconnect.realtime import protocol
from webconnect.realtime.selectors import namespace_get
from webconnect.realtime.services import channel_resource


def dashboard_resource(dashboard: Dashboard) -> Resource:
    return Resource(
        "Dashboard",
        str(dashboard.pk),
        {"owner_id": dashboard.owner_id, "visibility": dashboard.visibility, "editor_ids": [], "viewer_ids": []},
    )


def all_dashboard_resources() -> Iterator[Resource]:
    """Every dashboard as authorization sees it (the policy-change impact preview)."""
    for dashboard in Dashboard.objects.only("pk", "owner_id", "visibility").order_by("pk").iterator():
        yield dashboard_resource(dashboard)


def dashboard_rights(principal: Principal, dashboard: Dashboard) -> tuple[bool, bool]:
    """(may view, may edit) through the authorization service."""
    resource = dashboard_resource(dashboard)
    return bool(authorize(principal, "view", resource)), bool(authorize(principal, "edit", resource))


def dashboard_list(principal: Principal) -> list[Dashboard]:
    """Dashboards the principal may view: the candidates are narrowed in SQL, then each is authorized."""
    user = principal.user
    if not principal.is_authenticated:
        return []
    candidates: QuerySet[Dashboard] = Dashboard.objects.select_related("owner")
    if not user.is_staff:
        shared = shared_resource_ids(user=user, resource_type="Dashboard")
        candidates = candidates.filter(Q(owner=user) | ~Q(visibility=Dashboard.Visibility.PRIVATE) | Q(pk__in=shared))
    return [d for d in candidates if authorize(principal, "view", dashboard_resource(d))]


@dataclass(frozen=True)
class ChannelAccess:
    """Whether a viewer may read a widget's channel, and if not, what to tell them."""

    allowed: bool
    code: str = ""  # "no_access", "no_channel"
    message: str = ""


def channel_access(principal: Principal, channel: str) -> ChannelAccess:
    """Subscribe and history on `channel`, both through the authorization service."""
    if not protocol.valid_channel(channel):
        return ChannelAccess(False, "no_channel", f"{channel!r} is not a valid channel name")
    namespace = namespace_get(protocol.namespace_of(channel))
    if namespace is None:
        return ChannelAccess(
            False, "no_channel", f"channel {channel} does not exist (no namespace {protocol.namespace_of(channel)!r})"
        )
    resource = channel_resource(channel, namespace)  # exactly what the real-time layer checks
    for action in ("subscribe", "history"):
        if not authorize(principal, action, resource):
            return ChannelAccess(False, "no_access", "no access")
    return ChannelAccess(True)


def layout_boxes(dashboard: Dashboard, widgets: list[tuple[int, str]] | None = None) -> list[Box]:
    """Where each widget (id, kind) sits on the grid, in reading order (see dashboards/layout.py)."""
    if widgets is None:
        widgets = list(dashboard.widgets.values_list("id", "kind"))
    stored = [item for item in dashboard.layout or [] if isinstance(item, dict)]
    return layout.place(stored, widgets)


def channel_suggestions(principal: Principal, limit: int = 50) -> list[str]:
    """Channels that widgets already read and this principal may read too, for the editor's channel field."""
    channels = Widget.objects.order_by("channel").values_list("channel", flat=True).distinct()[: limit * 4]
    return [c for c in channels if channel_access(principal, c).allowed][:limit]


def value_notes(dashboard: Dashboard) -> dict[str, dict[str, str]]:
    """What a null value means, per channel and value path, where the server knows (the ops figures).

    The ops publisher sends null for figures it cannot read in this deployment, such
    as the Celery queue length without a Redis broker; the page shows the reason
    instead of a bare dash.
    """
    if dashboard.system != "ops":
        return {}
    notes: dict[str, str] = {}
    broker = str(getattr(settings, "CELERY_BROKER_URL", "") or "").partition(":")[0]
    if broker and broker not in ("redis", "rediss"):
        notes["celery_queue"] = f"n/a ({broker} broker)"
    elif settings.REDIS_URL:
        notes["celery_queue"] = "n/a (Redis unreachable)"
    if not settings.REDIS_URL:
        notes["redis.ok"] = "n/a (embedded mode)"
    return {OPS_CHANNEL: notes}


def widget_list(dashboard: Dashboard) -> list[tuple[Widget, Box]]:
    """The dashboard's widgets with their boxes, in reading order (top to bottom, left to right)."""
    widgets = {w.pk: w for w in dashboard.widgets.all()}
    boxes = layout_boxes(dashboard, [(w.pk, w.kind) for w in widgets.values()])
    return [(widgets[box["id"]], box) for box in boxes]


def widget_box(dashboard: Dashboard, widget: Widget) -> Box:
    for box in layout_boxes(dashboard):
        if box["id"] == widget.pk:
            return box
    w, h = layout.default_size(widget.kind)
    return Box(id=widget.pk, x=0, y=0, w=w, h=h)


class QueryError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def max_query_points() -> int:
    return int(getattr(settings, "DASHBOARDS_MAX_QUERY_POINTS", 10_000))


def check_range(from_ms: int, to_ms: int, step_ms: int) -> int:
    """The number of buckets the query would return, or raise QueryError saying what is wrong."""
    if from_ms > to_ms:
        raise QueryError("'from' is after 'to'")
    if step_ms < 1:
        raise QueryError("'step' must be at least 1 millisecond")
    buckets = (to_ms - from_ms) // step_ms + 1
    limit = max_query_points()
    if buckets > limit:
        raise QueryError(
            f"step {step_ms} ms over this range gives {buckets} points, more than the limit of {limit}; "
            "use a larger step"
        )
    return buckets


def series_query(*, channel: str, path: str, from_ms: int, to_ms: int, step_ms: int) -> list[dict[str, Any]]:
    """One row per non-empty bucket of `step_ms`: bucket start, avg, min, max, last-bucket count.

    Aggregated in the database (GROUP BY ts / step), so the rows read never reach Python.
    """
    check_range(from_ms, to_ms, step_ms)
    bucket = ExpressionWrapper(F("ts") / Value(step_ms), output_field=IntegerField())
    rows = (
        SeriesPoint.objects.filter(channel=channel, path=path, ts__gte=from_ms, ts__lte=to_ms)
        .annotate(bucket=bucket)
        .values("bucket")
        .annotate(avg=Avg("value"), min=Min("value"), max=Max("value"), count=Count("id"))
        .order_by("bucket")
    )
    return [
        {"t": row["bucket"] * step_ms, "avg": row["avg"], "min": row["min"], "max": row["max"], "n": row["count"]}
        for row in rows
    ]


def channel_paths() -> dict[str, set[str]]:
    """Every channel some chart reads, with the numeric value paths to record on it."""
    table: dict[str, set[str]] = {}
    for channel, value_paths in Widget.objects.filter(kind__in=NUMERIC_KINDS).values_list("channel", "value_paths"):
        table.setdefault(channel, set()).update(p for p in value_paths or [] if isinstance(p, str))
    return table
