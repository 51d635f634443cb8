"""Default real-time limits: a fresh install caps sockets and publishes, so one client cannot exhaust it.

Before, nothing was limited after install (one socket published 10,000 messages, one user held
2,000 sockets). The values are generous for real use (a user's many tabs and devices, a busy
office behind one NAT, a chatty client) and meant to be edited in the admin like any other row:
"Connection limit policies" and "Rate-limit policies" (docs/policies.md, "Defaults").
Rows an administrator already created with these names are left as they are.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

CONNECTION_LIMITS = [
    ("default-sockets-per-user", "user", 100, "Default: at most 100 WebSockets open at once per signed-in user."),
    ("default-sockets-per-ip", "ip", 300, "Default: at most 300 WebSockets open at once per client IP."),
]
# (name, scope, actions, limits, description)
RATE_LIMITS = [
    (
        "default-publish-per-user",
        "user",
        "publish",
        "50/second;1500/minute",
        "Default: a user (or, signed out, an IP) publishes at most 50 messages a second, 1500 a minute, "
        "over WebSocket, REST and dashboard ingest together.",
    ),
    (
        "default-publish-per-channel",
        "channel",
        "publish",
        "500/second",
        "Default: at most 500 messages a second into any one channel, from everyone together.",
    ),
]


def install(apps: Any, schema_editor: Any) -> None:
    connection_limit = apps.get_model("policies", "ConnectionLimitPolicy")
    rate_limit = apps.get_model("policies", "RateLimitPolicy")
    for name, scope, maximum, description in CONNECTION_LIMITS:
        connection_limit.objects.get_or_create(
            name=name, defaults={"scope": scope, "max_connections": maximum, "description": description}
        )
    for name, scope, actions, limits, description in RATE_LIMITS:
        rate_limit.objects.get_or_create(
            name=name,
            defaults={
                "scope": scope,
                "actions": actions,
                "limits": limits,
                "strategy": "sliding",
                "description": description,
            },
        )


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("policies", "ConnectionLimitPolicy").objects.filter(
        name__in=[row[0] for row in CONNECTION_LIMITS]
    ).delete()
    apps.get_model("policies", "RateLimitPolicy").objects.filter(name__in=[row[0] for row in RATE_LIMITS]).delete()


class Migration(migrations.Migration):
    dependencies = [("policies", "0007_default_document_edit_limits")]

    operations = [migrations.RunPython(install, uninstall)]
