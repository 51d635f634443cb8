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
        from dashboards.selectors import all_dashboard_resources
        from policies.impact import register_resources
        from webconnect.kernel import startup

        register_resources("Dashboard", all_dashboard_resources)

        if settings.DASHBOARDS_BACKGROUND:
            startup.register("dashboards-recorder", recorder.run_default)
            startup.register("dashboards-ops", ops.run)
