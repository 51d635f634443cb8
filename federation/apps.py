from __future__ import annotations

from django.apps import AppConfig


class FederationConfig(AppConfig):
    name = "federation"
    verbose_name = "Identity providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from federation import ldap  # noqa: F401  (records directory errors for the sign-in messages)
        from webconnect.identity import register_bearer_verifier

        if getattr(settings, "OIDC_ACCEPT_BEARER", False):
            from federation.bearer import averify_bearer

            register_bearer_verifier(averify_bearer)
