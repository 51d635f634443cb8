from __future__ import annotations

from typing import Any

from django.db import migrations

DEFAULTS = [
    # A fresh install has working chat channels: history, presence, join/leave, clients publish.
    {
        "name": "chat",
        "history_size": 100,
        "history_ttl": 3600,
        "presence": True,
        "join_leave": True,
        "client_publish": True,
    },
    # Personal channels user.<id>: direct messages (e.g. WebRTC signalling); a short history
    # so a reconnecting peer catches up, no presence.
    {
        "name": "user",
        "history_size": 50,
        "history_ttl": 300,
        "presence": False,
        "join_leave": False,
        "client_publish": True,
    },
]


def install(apps: Any, schema_editor: Any) -> None:
    Namespace = apps.get_model("webconnect", "Namespace")
    for values in DEFAULTS:
        Namespace.objects.get_or_create(name=values["name"], defaults=values)


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("webconnect", "Namespace").objects.filter(name__in=[d["name"] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("webconnect", "0002_realtime")]
    operations = [migrations.RunPython(install, uninstall)]
