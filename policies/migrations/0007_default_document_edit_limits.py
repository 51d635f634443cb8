"""Default edit limits for co-edited documents (issue 12): installed on every install, editable in the admin.

`collab.sync` asks `acheck_rate(principal, "edit", Resource("Document", id))` for every
update a socket sends; without a matching RateLimitPolicy one editor could send updates
as fast as the socket carries them (10,000 one-character updates were all stored and
delayed the other editors by seconds). Per editor and document: a person types at most a
few dozen changes a second (key repeat ~30/s), so 60/second with 1800/minute (30/s
sustained) never refuses typing and cuts a flood off after a second; per document, all
editors together: 300/second, 9000/minute. A refused update closes the socket with 4529
(the stock provider reconnects and re-sends). Policies are matched on the action and the
resource id only: "edit" is asked only by the document socket today.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

# Named so the per-editor policy sorts (and is checked) first: a flooder is refused
# before it spends the document's shared budget.
DEFAULTS = [
    (
        "default-doc-edit-editor",
        "Default: updates one editor may send to one document (collab).",
        "user_channel",
        "60/second;1800/minute",
    ),
    (
        "default-doc-edit-total",
        "Default: updates all editors together may send to one document (collab).",
        "channel",
        "300/second;9000/minute",
    ),
]


def _bump_version(apps: Any) -> None:
    # Running processes reload their rate rules when the policy version moves.
    state, _ = apps.get_model("policies", "PolicyState").objects.get_or_create(pk=1)
    state.version += 1
    state.save()


def install(apps: Any, schema_editor: Any) -> None:
    policy = apps.get_model("policies", "RateLimitPolicy")
    for name, description, scope, limits in DEFAULTS:
        policy.objects.get_or_create(
            name=name,
            defaults={"description": description, "scope": scope, "actions": "edit", "limits": limits},
        )
    _bump_version(apps)


def uninstall(apps: Any, schema_editor: Any) -> None:
    apps.get_model("policies", "RateLimitPolicy").objects.filter(name__in=[row[0] for row in DEFAULTS]).delete()
    _bump_version(apps)


class Migration(migrations.Migration):
    # main has 0006_connection_limit_policy_plural (also on 0005): at merge, depend on the newest one.
    dependencies = [("policies", "0006_connection_limit_policy_plural")]

    operations = [migrations.RunPython(install, uninstall)]
