"""Prometheus metrics for decisions and rate limits (default registry)."""

from __future__ import annotations

from prometheus_client import Counter

decisions = Counter(
    "webconnect_policy_decisions_total",
    "Authorization decisions by result (allow, deny, error) and whether the decision cache answered.",
    ["result", "cached"],
)
rate_limited = Counter(
    "webconnect_rate_limited_total",
    "Actions refused by a rate-limit policy.",
    ["policy"],
)
rate_limit_storage_errors = Counter(
    "webconnect_rate_limit_storage_errors_total",
    "Rate-limit checks that could not reach the shared storage (the in-process limiter decided alone).",
)
policy_reloads = Counter("webconnect_policy_reloads_total", "Policy version changes seen by this process.")
