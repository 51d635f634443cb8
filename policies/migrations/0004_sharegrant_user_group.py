"""Shares name a user or a group by foreign key (deleting either deletes its shares).

Existing rows get their user or group from the Cedar principal they carried;
a row whose user or group no longer exists is deleted: it granted nothing, and
would otherwise grant access to whoever later took that group name.
"""

from __future__ import annotations

from typing import Any

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def fill_principals(apps: Any, schema_editor: Any) -> None:
    ShareGrant = apps.get_model("policies", "ShareGrant")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    dangling = []
    for grant in ShareGrant.objects.all():
        if grant.principal_type == "User":
            grant.user = (
                User.objects.filter(pk=int(grant.principal_id)).first() if grant.principal_id.isdigit() else None
            )
        else:
            grant.group = Group.objects.filter(name=grant.principal_id).first()
        if grant.user is None and grant.group is None:
            dangling.append(grant.pk)
        else:
            grant.save(update_fields=["user", "group"])
    if dangling:
        ShareGrant.objects.filter(pk__in=dangling).delete()
        PolicyState = apps.get_model("policies", "PolicyState")
        state, _ = PolicyState.objects.get_or_create(pk=1)
        state.version += 1
        state.save()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("policies", "0003_connection_limits"),
    ]

    operations = [
        migrations.AddField(
            model_name="sharegrant",
            name="user",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="share_grants",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="sharegrant",
            name="group",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="share_grants",
                to="auth.group",
            ),
        ),
        migrations.RunPython(fill_principals, migrations.RunPython.noop),
    ]
