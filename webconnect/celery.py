"""The Celery app. Tasks live in each app's tasks.py; schedules in django-celery-beat."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webconnect.settings")

app = Celery("webconnect")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
