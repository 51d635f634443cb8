"""Every job's beat schedule, created once in django-celery-beat and then edited in the admin."""

from __future__ import annotations

import json

from django_celery_beat.models import CrontabSchedule, PeriodicTask

from webconnect.jobs.registry import JOBS


def ensure_periodic_tasks() -> list[str]:
    """Create a PeriodicTask for each registered job that has none; never overwrite an admin's edit."""
    created = []
    for job in JOBS.values():
        name = f"job: {job.name}"
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        minute, hour, day_of_month, month_of_year, day_of_week = job.schedule.split()
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone="UTC",
        )
        PeriodicTask.objects.create(
            name=name,
            task="webconnect.run_job",
            crontab=crontab,
            kwargs=json.dumps({"name": job.name}),
            description=job.description,
        )
        created.append(name)
    return created
