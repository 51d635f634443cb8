from __future__ import annotations

from django.apps import AppConfig


class WebconnectConfig(AppConfig):
    name = "webconnect"
    verbose_name = "Platform"

    def ready(self) -> None:
        from webconnect import receivers  # noqa: F401  (connects the audit receivers)
        from webconnect.kernel import receivers as kernel_receivers  # noqa: F401  (closes revoked sockets)
        from webconnect.kernel import startup
        from webconnect.realtime import jobs as realtime_jobs  # (registers the real-time retention jobs)

        startup.register("memory-history-pruning", realtime_jobs.prune_memory_history_forever)
