"""Writes: dashboards, widgets, layout, series points, and batch ingest."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from dashboards import metrics, paths, selectors
from dashboards.layout import Box, add_box, default_size, layout_problem
from dashboards.layout import place as layout_place
from dashboards.models import Dashboard, SeriesPoint, Widget
from dashboards.selectors import channel_paths
from dashboards.validation import widget_problems
from webconnect.identity import Principal
from webconnect.realtime import protocol
from webconnect.realtime import services as realtime
from webconnect.realtime.selectors import namespace_get


@transaction.atomic
def dashboard_create(*, owner: Any, title: str, visibility: str = "private", system: str = "") -> Dashboard:
    dashboard = Dashboard(owner=owner, title=title, visibility=visibility, system=system)
    dashboard.full_clean()
    dashboard.save()
    return dashboard


@transaction.atomic
def dashboard_update(*, dashboard: Dashboard, data: dict[str, Any]) -> Dashboard:
    for key in ("title", "visibility", "layout"):
        if key in data:
            setattr(dashboard, key, data[key])
    if "layout" in data:
        dashboard.layout = layout_normalise(dashboard, data["layout"])
    dashboard.full_clean()
    dashboard.save()
    return dashboard


def layout_normalise(dashboard: Dashboard, layout: Any) -> list[Box]:
    """A box for each of this dashboard's widgets, once each, in reading order.

    Items of other dashboards' widgets are dropped; widgets the layout leaves out
    keep their size and go to the first free spot after the others.
    """
    if problem := layout_problem(layout):
        raise ValidationError({"layout": problem})
    kinds = list(dashboard.widgets.values_list("id", "kind"))
    given = {item["id"] for item in layout}
    left_out = [
        {"id": box["id"], "w": box["w"], "h": box["h"]}
        for box in selectors.layout_boxes(dashboard, kinds)
        if box["id"] not in given
    ]
    return layout_place([*layout, *left_out], kinds)


def _check_widget(kind: str, channel: str, value_paths: Any, options: Any) -> None:
    problems = widget_problems(kind=kind, channel=channel, value_paths=value_paths, options=options)
    if problems:
        raise ValidationError(problems)


@transaction.atomic
def widget_create(
    *,
    dashboard: Dashboard,
    kind: str,
    title: str,
    channel: str,
    value_paths: list[str],
    options: dict[str, Any] | None = None,
    w: int | None = None,
    h: int | None = None,
) -> Widget:
    options = options or {}
    _check_widget(kind, channel, value_paths, options)
    widget = Widget.objects.create(
        dashboard=dashboard, kind=kind, title=title, channel=channel, value_paths=value_paths, options=options
    )
    # Existing boxes keep their place; the new one goes to the first free spot that fits.
    others = [item for item in dashboard.widgets.values_list("id", "kind") if item[0] != widget.pk]
    boxes = selectors.layout_boxes(dashboard, others)
    default_w, default_h = default_size(kind)
    dashboard.layout = add_box(boxes, widget.pk, w or default_w, h or default_h)
    dashboard.full_clean()
    dashboard.save(update_fields=["layout", "updated_at"])
    return widget


@transaction.atomic
def widget_update(*, widget: Widget, data: dict[str, Any]) -> Widget:
    for key in ("kind", "title", "channel", "value_paths", "options"):
        if key in data:
            setattr(widget, key, data[key])
    _check_widget(widget.kind, widget.channel, widget.value_paths, widget.options)
    widget.save()
    return widget


@transaction.atomic
def widget_delete(*, widget: Widget) -> None:
    dashboard = widget.dashboard
    dashboard.layout = [i for i in dashboard.layout or [] if not (isinstance(i, dict) and i.get("id") == widget.pk)]
    dashboard.save(update_fields=["layout", "updated_at"])
    widget.delete()


# --- Series points -----------------------------------------------------------------


@dataclass
class Extracted:
    points: list[tuple[str, float]] = field(default_factory=list)  # (path, value)
    problems: list[dict[str, str]] = field(default_factory=list)  # {"path", "code", "message"}


def extract_points(payload: Any, value_paths: Iterable[str]) -> Extracted:
    """The numbers at `value_paths` in `payload`, and what is wrong with the others.

    A null value means "no value now" (a figure that is not available) and is skipped
    without a problem.
    """
    result = Extracted()
    for path in value_paths:
        try:
            result.points.append((path, paths.number_at(payload, path)))
        except paths.PathError as exc:
            if exc.code == "null":
                continue
            result.problems.append({"path": path, "code": exc.code, "message": exc.message})
    return result


def points_store(points: Iterable[tuple[str, str, int, float]]) -> int:
    """Insert (channel, path, ts_ms, value) rows in batches; returns how many."""
    rows = [SeriesPoint(channel=c, path=p, ts=t, value=v) for c, p, t, v in points]
    SeriesPoint.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def ingest_max_batch() -> int:
    return int(getattr(settings, "DASHBOARDS_INGEST_MAX_BATCH", 1000))


def ingest_prepare(channel: str) -> set[str]:
    """The sync half of an ingest: the widget paths to check on `channel`, and a warm namespace cache.

    Done before entering the event loop so that the async half reads the
    namespace from the per-process cache instead of the database.
    """
    if protocol.valid_channel(channel):
        namespace_get(protocol.namespace_of(channel))
    return channel_paths().get(channel, set())


async def ingest_batch(
    *, principal: Principal, channel: str, payloads: list[Any], value_paths: set[str] | None = None
) -> dict[str, Any]:
    """Publish many messages on `channel` at once (each goes live and is recorded as points).

    Each message passes the real-time publish checks (authorization, rate limits,
    payload schema). The answer lists, per message, the widget value paths that
    did not yield a number, so a producer learns at once why a chart stays empty.
    """
    protocol.check_channel(channel)
    namespace = await realtime.check_channel_action(principal, "publish", channel)
    first = last = None
    problems: list[dict[str, Any]] = []
    for index, payload in enumerate(payloads):
        position = await realtime.channel_publish(
            principal=principal, channel=channel, payload=payload, source="dashboards-ingest", namespace=namespace
        )
        metrics.INGESTED.inc()
        first = position.offset if first is None else first
        last = position.offset
        for problem in extract_points(payload, sorted(value_paths or ())).problems:
            problems.append({"index": index, **problem})
    return {"published": len(payloads), "first_offset": first, "last_offset": last, "problems": problems[:100]}
