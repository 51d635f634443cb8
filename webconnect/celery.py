"""The Celery app. Tasks live in each app's tasks.py; schedules in django-celery-beat."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webconnect.settings")

app = Celery("webconnect")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def message_keepalive(request: Any) -> Callable[[], None] | None:
    """A function that renews the visibility of the message a running task came in, or None.

    The Redis broker hands an unacknowledged (acks_late) message to another worker
    once it has been out for `visibility_timeout`, whether or not its worker is
    alive. Kombu keeps a delivered message's time in the `unacked_index` sorted
    set; moving it to now (ZADD XX: only while still unacknowledged) is what a
    lease renewal is to the broker. So the timeout can be short, a killed worker's
    task comes back within it, and a job that runs longer is not run twice.
    """
    tag = (getattr(request, "properties", None) or {}).get("delivery_tag")
    if not tag or not str(app.conf.broker_url or "").startswith(("redis://", "rediss://", "unix://")):
        return None  # eager mode, or a broker without a visibility timeout (filesystem)

    def renew() -> None:
        with app.connection_for_write() as conn:
            channel: Any = conn.default_channel
            with channel.conn_or_acquire() as client:
                client.zadd(channel.unacked_index_key, {tag: time.time()}, xx=True)

    return renew
