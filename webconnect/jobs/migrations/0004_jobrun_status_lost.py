from django.db import migrations, models

# A run whose worker died mid-run is marked "lost" once its lease lapses (it used to
# stay "running" forever). Only the choices change: the column is already wide enough.


class Migration(migrations.Migration):
    dependencies = [("jobs", "0003_remove_stale_presence_policy")]
    operations = [
        migrations.AlterField(
            model_name="jobrun",
            name="status",
            field=models.CharField(
                choices=[
                    ("running", "Running"),
                    ("succeeded", "Succeeded"),
                    ("failed", "Failed"),
                    ("skipped", "Skipped"),
                    ("lost", "Lost"),
                ],
                default="running",
                max_length=16,
            ),
        ),
    ]
