"""Prometheus metrics of the real-time layer, all named `webconnect_*`.

Multi-process: when PROMETHEUS_MULTIPROC_DIR is set (before start-up, to an empty
directory shared by the server processes), prometheus-client writes every
process's values there and /metrics aggregates them (gauges sum live processes).
Without it each process exposes its own registry, which is right for one process.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

CONNECTIONS = Gauge(
    "webconnect_realtime_connections", "Open real-time WebSocket connections", multiprocess_mode="livesum"
)
SUBSCRIPTIONS = Gauge("webconnect_realtime_subscriptions", "Live channel subscriptions", multiprocess_mode="livesum")
FRAMES_IN = Counter("webconnect_realtime_frames_in", "Client frames received, by type", ["type"])
FRAMES_OUT = Counter("webconnect_realtime_frames_out", "Frames sent to clients, by type", ["type"])
FRAMES_OUT_MESSAGE = FRAMES_OUT.labels("message")  # the hot one, resolved once
DELIVERIES = Counter("webconnect_realtime_deliveries", "Channel messages written to local sockets")
ERRORS = Counter("webconnect_realtime_errors", "Error frames and error closes, by code", ["code"])
PUBLISHES = Counter("webconnect_realtime_publishes", "Messages published, by source", ["source"])
DISCONNECTS = Counter("webconnect_realtime_disconnects", "Server-initiated closes, by reason", ["reason"])
LATENCY = Histogram(
    "webconnect_realtime_frame_seconds",
    "Time to handle one client frame, by type",
    ["type"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        # Custom collectors (e.g. the jobs collector, which reads the database when
        # scraped) are not in the multiprocess files: add them as they are. The
        # registry offers no public list of its collectors.
        for collector in list(REGISTRY._collector_to_names):
            if not isinstance(collector, MetricWrapperBase | ProcessCollector | PlatformCollector | GCCollector):
                registry.register(collector)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
