from __future__ import annotations

from django.apps import AppConfig


class BridgesConfig(AppConfig):
    name = "bridges"
    verbose_name = "Bridges (RabbitMQ, MQTT)"

    def ready(self) -> None:
        from bridges import metrics, outbox
        from webconnect.kernel import startup
        from webconnect.realtime import hub

        hub.on_published(outbox.on_published)
        startup.register("bridges-figures", metrics.run)
