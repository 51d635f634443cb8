"""The built-in dashboards: the demo (fed by `demo_producer`) and the staff operations dashboard."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction

from dashboards import services
from dashboards.models import Dashboard
from dashboards.ops import OPS_CHANNEL, ensure_namespaces

DEMO_CHANNEL = "demo.sensors"
DEMO_EVENTS = "demo.events"
PRODUCER_USERNAME = "demo-producer"

DEMO_WIDGETS: list[dict[str, Any]] = [
    {"kind": "line", "title": "Line temperatures", "channel": DEMO_CHANNEL, "value_paths": ["temp.line1", "temp.line2"],
     "options": {"unit": "°C", "window": 300}, "w": 8},
    {"kind": "gauge", "title": "Pressure", "channel": DEMO_CHANNEL, "value_paths": ["pressure"],
     "options": {"unit": "bar", "min": 0, "max": 10, "thresholds": [[0, "#2b8a3e"], [7, "#e67700"], [9, "#b3261e"]]},
     "w": 4},
    {"kind": "stat", "title": "Throughput", "channel": DEMO_CHANNEL, "value_paths": ["throughput"],
     "options": {"unit": "items/min", "decimals": 0, "window": 300}, "w": 4},
    {"kind": "bar", "title": "Motor load", "channel": DEMO_CHANNEL, "value_paths": ["motors.a", "motors.b", "motors.c"],
     "options": {"unit": "%", "max": 100, "decimals": 0}, "w": 4},
    {"kind": "table", "title": "Latest readings", "channel": DEMO_CHANNEL,
     "value_paths": ["temp.line1", "pressure", "throughput"], "options": {"rows": 8, "decimals": 1}, "w": 4},
    {"kind": "log", "title": "Plant events", "channel": DEMO_EVENTS, "value_paths": [], "options": {"rows": 30},
     "w": 12},
]  # fmt: skip

OPS_WIDGETS: list[dict[str, Any]] = [
    {"kind": "line", "title": "Connections and subscriptions", "value_paths": ["connections", "subscriptions"], "w": 6},
    {"kind": "line", "title": "Deliveries and publishes per second",
     "value_paths": ["deliveries_per_s", "publishes_per_s"], "w": 6},
    {"kind": "line", "title": "Frame handling latency (ms)", "value_paths": ["latency_ms.p50", "latency_ms.p99"],
     "w": 6},
    {"kind": "line", "title": "Policy decisions and denials per second",
     "value_paths": ["policy.decisions_per_s", "policy.denials_per_s"], "w": 6},
    {"kind": "stat", "title": "Database round trip", "value_paths": ["db.ms"], "options": {"unit": "ms"}, "w": 3},
    {"kind": "stat", "title": "Celery queue", "value_paths": ["celery_queue"], "options": {"decimals": 0}, "w": 3},
    {"kind": "stat", "title": "Rate-limited (total)", "value_paths": ["rate_limited"], "options": {"decimals": 0},
     "w": 3},
    {"kind": "bar", "title": "Health (1 = ok)", "value_paths": ["db.ok", "redis.ok"], "options": {"max": 1}, "w": 3},
    {"kind": "table", "title": "Per process: frames and errors", "value_paths": ["process", "frames_in", "frames_out",
     "errors"], "options": {"rows": 10, "key": "process"}, "w": 12},
    {"kind": "table", "title": "Last job results", "value_paths": ["jobs"], "options": {"rows": 3}, "w": 12},
    {"kind": "line", "title": "Bridge outage buffer (messages)", "value_paths": ["bridges.buffered", "bridges.dropped"],
     "w": 6},
    {"kind": "bar", "title": "Bridges up (1 = connected)", "value_paths": ["bridges.up.amqp", "bridges.up.mqtt"],
     "options": {"max": 1}, "w": 6},
]  # fmt: skip


def _ensure(*, system: str, title: str, owner: Any, visibility: str, widgets: list[dict[str, Any]]) -> Dashboard:
    existing = Dashboard.objects.filter(system=system).first()
    if existing is not None:
        return existing
    dashboard = services.dashboard_create(owner=owner, title=title, visibility=visibility, system=system)
    for spec in widgets:
        spec = {"channel": OPS_CHANNEL, "options": {}, **spec}
        services.widget_create(dashboard=dashboard, **spec)
    return dashboard


@transaction.atomic
def builtin_dashboards_ensure(*, owner: Any) -> tuple[Dashboard, Dashboard]:
    """The demo (public, its namespace readable anonymously) and operations dashboards, once.

    For demonstrations only (`bootstrap --demo`, `make run`, `demo_producer`): a production install
    calls `ops_dashboard_ensure`, so no namespace is anonymous unless an administrator makes it so.
    """
    ensure_namespaces(demo=True)
    demo = _ensure(system="demo", title="Demo: plant sensors", owner=owner, visibility="public", widgets=DEMO_WIDGETS)
    return demo, ops_dashboard_ensure(owner=owner)


@transaction.atomic
def ops_dashboard_ensure(*, owner: Any) -> Dashboard:
    """The operations dashboard (private: staff see it through the staff policy), once."""
    ensure_namespaces()
    return _ensure(system="ops", title="Operations", owner=owner, visibility="private", widgets=OPS_WIDGETS)


def producer_user() -> Any:
    """A staff account without a password: the demo producer publishes as it with a short-lived token."""
    user, created = get_user_model().objects.get_or_create(
        username=PRODUCER_USERNAME, defaults={"is_staff": True, "first_name": "Demo producer"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
