from __future__ import annotations

from django.apps import AppConfig


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self) -> None:
        """Plug the policy engine into the kernel: decisions, rate and connection limits, change watching."""
        from policies import (
            receivers,  # noqa: F401  (group changes move the policy version)
            watch,
        )
        from policies.connlimits import limiter
        from policies.engine import decide
        from policies.ratelimit import check_rate
        from webconnect.authorization import set_connection_limiter, set_decider, set_rate_checker
        from webconnect.kernel import sessions, startup

        set_decider(decide)
        set_rate_checker(check_rate)
        set_connection_limiter(limiter)
        sessions.on_control("policy", watch.on_policy_message)
        startup.register("policy-poller", watch.poll_forever)
