from __future__ import annotations

from django.apps import AppConfig
from django.conf import settings


class DashboardsConfig(AppConfig):
    name = "dashboards"
    verbose_name = "Dashboards"

    def ready(self) -> None:
        from dashboards import (
            jobs,  # noqa: F401  (registers the jobs)
            ops,
            recorder,
        )
        from webconnect.kernel import startup

        if settings.DASHBOARDS_BACKGROUND:
            startup.register("dashboards-recorder", recorder.run_default)
            startup.register("dashboards-ops", ops.run)
