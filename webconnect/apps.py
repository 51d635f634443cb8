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
        _register_encrypted_stores()


def _register_encrypted_stores() -> None:
    # What the core encrypts at rest (webconnect/encryption.py); apps register their own.
    from oauth2_provider.models import get_application_model

    from webconnect import encryption, oauth_secrets
    from webconnect.encryption_stores import RedisHistoryStreams, TextColumn

    oauth_secrets.connect()
    application = get_application_model()
    encryption.register_store(
        "oauth.client_secret", lambda: TextColumn(application, "client_secret", only={"hash_client_secret": False})
    )
    encryption.register_store("realtime.history", RedisHistoryStreams)
