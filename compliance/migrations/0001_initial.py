from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="AuditCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("created_at", models.DateTimeField(db_index=True)),
                ("event_id", models.BigIntegerField(db_index=True)),
                ("event_count", models.BigIntegerField(blank=True, null=True)),
                ("chain_hash", models.CharField(max_length=64)),
                ("reason", models.CharField(max_length=32)),
                ("key_fingerprint", models.CharField(max_length=16)),
                ("signature", models.CharField(max_length=100)),
            ],
            options={"ordering": ["-id"]},
        ),
    ]
