"""A group-based rule in the default policy set, off until an administrator turns it on.

Groups come from LDAP or the OpenID provider as Django groups, which policies
see as `Role` parents (and `principal.groups`). The rule shows the pattern with
a group name every organisation picks for itself, so it ships disabled: a fresh
install stays default-deny whatever its groups are called.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

NAME = "group-engineering-channels"
DESCRIPTION = (
    "Example (off by default): members of the group 'engineering' (from LDAP, the OpenID provider or the admin) "
    "may use the eng.* channels."
)
TEXT = (
    'permit(principal in Role::"engineering", action in [Action::"subscribe", Action::"publish", '
    'Action::"presence", Action::"history"], resource is Channel)\n'
    'when { resource.namespace == "eng" };'
)


def install(apps: Any, schema_editor: Any) -> None:
    AccessPolicy = apps.get_model("policies", "AccessPolicy")
    AccessPolicyVersion = apps.get_model("policies", "AccessPolicyVersion")
    policy, created = AccessPolicy.objects.get_or_create(
        name=NAME, defaults={"description": DESCRIPTION, "text": TEXT, "enabled": False}
    )
    if created:
        AccessPolicyVersion.objects.create(
            policy=policy,
            policy_name=NAME,
            number=1,
            change="created",
            description=DESCRIPTION,
            enabled=False,
            text=TEXT,
            diff="(installed by migration)",
        )


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("policies", "AccessPolicy").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("federation", "0001_initial"), ("policies", "0008_default_realtime_limits")]
    operations = [migrations.RunPython(install, uninstall)]
