from __future__ import annotations

from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "federation"
    verbose_name = "Identity providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from federation import ldap  # noqa: F401  (records directory errors for the sign-in messages)
