from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "webconnect.jobs"
    label = "jobs"
    verbose_name = "Jobs and retention"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from webconnect.jobs import builtin, metrics  # noqa: F401  (registers the built-in jobs and the collector)

        # The real-time layer's retention jobs (and the embedded server's history pruning).
        # This belongs in WebconnectConfig.ready() with the other real-time imports.
        from webconnect.realtime import jobs as realtime_jobs  # noqa: F401

        post_migrate.connect(_create_schedules, sender=self)


def _create_schedules(**kwargs: object) -> None:
    # After every migrate, so each job (including ones added by later releases) has a schedule to edit.
    from webconnect.jobs.schedules import ensure_periodic_tasks

    ensure_periodic_tasks()
