from django.db import migrations

# Sensible defaults an administrator edits in the admin.
DEFAULTS = [
    # kind, max_age_days, max_count
    ("audit_events", 365, None),
    ("channel_history", 7, None),
    ("document_updates", 30, None),  # log entries already folded into a snapshot
    ("document_versions", 365, None),
    ("series_points", 30, None),  # raw points; coarser buckets are kept longer
    ("oauth_tokens", 7, None),
    ("realtime_tickets", 1, None),
    ("stale_presence", 1, None),
    ("job_runs", 90, None),
]


def install(apps, schema_editor):
    RetentionPolicy = apps.get_model("jobs", "RetentionPolicy")
    for kind, age, count in DEFAULTS:
        RetentionPolicy.objects.get_or_create(kind=kind, defaults={"max_age_days": age, "max_count": count})


def remove(apps, schema_editor):
    apps.get_model("jobs", "RetentionPolicy").objects.filter(kind__in=[kind for kind, _, _ in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("jobs", "0001_initial")]
    operations = [migrations.RunPython(install, remove)]
