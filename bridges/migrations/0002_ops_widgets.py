"""The bridge widgets on an Operations dashboard that existed before the bridges (new ones get them from OPS_WIDGETS).

Widgets missing from a dashboard's layout are placed at the first free spot when it is shown, so only the
rows are added. Reversing removes them.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

WIDGETS: list[dict[str, Any]] = [
    {"kind": "line", "title": "Bridge outage buffer (messages)", "value_paths": ["bridges.buffered", "bridges.dropped"],
     "options": {}},
    {"kind": "bar", "title": "Bridges up (1 = connected)", "value_paths": ["bridges.up.amqp", "bridges.up.mqtt"],
     "options": {"max": 1}},
]  # fmt: skip


def add(apps: Any, schema_editor: Any) -> None:
    Dashboard = apps.get_model("dashboards", "Dashboard")
    Widget = apps.get_model("dashboards", "Widget")
    for dashboard in Dashboard.objects.filter(system="ops"):
        for spec in WIDGETS:
            if not Widget.objects.filter(dashboard=dashboard, title=spec["title"]).exists():
                Widget.objects.create(dashboard=dashboard, channel="sys.ops", **spec)


def remove(apps: Any, schema_editor: Any) -> None:
    Widget = apps.get_model("dashboards", "Widget")
    Widget.objects.filter(dashboard__system="ops", title__in=[spec["title"] for spec in WIDGETS]).delete()


class Migration(migrations.Migration):
    dependencies = [("bridges", "0001_initial"), ("dashboards", "0001_initial")]
    operations = [migrations.RunPython(add, remove)]
