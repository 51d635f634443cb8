from django.db import migrations, models

# Presence entries of a stopped server process are garbage once its heartbeat lapses
# (readers already skip them), so "keep for N days" meant nothing: the policy goes,
# and the sweep_stale_presence job (webconnect/realtime/jobs.py) removes such entries.


def remove(apps, schema_editor):
    apps.get_model("jobs", "RetentionPolicy").objects.filter(kind="stale_presence").delete()


def restore(apps, schema_editor):
    apps.get_model("jobs", "RetentionPolicy").objects.get_or_create(
        kind="stale_presence", defaults={"max_age_days": 1, "max_count": None}
    )


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_default_retention_policies")]
    operations = [
        migrations.RunPython(remove, restore),
        migrations.AlterField(
            model_name="retentionpolicy",
            name="kind",
            field=models.CharField(
                choices=[
                    ("audit_events", "Audit events"),
                    ("channel_history", "Channel history"),
                    ("document_updates", "Document update logs"),
                    ("document_versions", "Document versions"),
                    ("series_points", "Dashboard time-series points"),
                    ("oauth_tokens", "Expired and revoked OAuth tokens"),
                    ("realtime_tickets", "Expired real-time tickets"),
                    ("job_runs", "Job run records"),
                ],
                max_length=32,
                unique=True,
            ),
        ),
    ]
