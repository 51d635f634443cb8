from __future__ import annotations

from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self) -> None:
        from policies import receivers  # noqa: F401  (group changes move the policy version)
        from policies.ratelimit import check_rate
        from webconnect.authorization import set_rate_checker

        set_rate_checker(check_rate)
        from policies.connlimits import limiter
        from webconnect.authorization import set_connection_limiter

        set_connection_limiter(limiter)
