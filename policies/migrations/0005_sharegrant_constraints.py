"""The share constraint: exactly one of a user or a group, matching the Cedar principal.

Separate from 0004 because PostgreSQL refuses to alter a table with pending
trigger events (the rows 0004 updated) in the same transaction.
"""

from __future__ import annotations

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("policies", "0004_sharegrant_user_group")]

    operations = [
        migrations.AlterModelOptions(name="sharegrant", options={"ordering": ["resource_type", "resource_id", "pk"]}),
        migrations.AlterField(
            model_name="sharegrant",
            name="principal_type",
            field=models.CharField(choices=[("User", "User"), ("Role", "Role")], editable=False, max_length=8),
        ),
        migrations.AlterField(
            model_name="sharegrant",
            name="principal_id",
            field=models.CharField(
                editable=False,
                help_text="The Cedar principal's id: the user's pk, or the group's name.",
                max_length=150,
            ),
        ),
        migrations.AlterField(
            model_name="sharegrant",
            name="resource_id",
            field=models.CharField(help_text="The document's or dashboard's id.", max_length=64),
        ),
        migrations.AlterField(
            model_name="sharegrant",
            name="template",
            field=models.ForeignKey(
                help_text="share-viewer (read) or share-editor (read and edit), or another template.",
                limit_choices_to={"is_template": True},
                on_delete=django.db.models.deletion.PROTECT,
                related_name="links",
                to="policies.accesspolicy",
            ),
        ),
        migrations.AddIndex(
            model_name="sharegrant",
            index=models.Index(fields=["resource_type", "resource_id"], name="share_grant_resource"),
        ),
        migrations.AddConstraint(
            model_name="sharegrant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("group__isnull", True), ("principal_type", "User"), ("user__isnull", False)),
                    models.Q(("group__isnull", False), ("principal_type", "Role"), ("user__isnull", True)),
                    _connector="OR",
                ),
                name="share_grant_user_xor_group",
            ),
        ),
    ]
