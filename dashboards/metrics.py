"""Prometheus metrics of the dashboards (on /metrics with the real-time ones)."""

from __future__ import annotations

from prometheus_client import Counter

POINTS_RECORDED = Counter("webconnect_dashboards_points_recorded", "Series points written by the recorder")
RECORDER_DROPPED = Counter(
    "webconnect_dashboards_recorder_dropped", "Channel messages dropped because the recorder buffer was full"
)
VALUES_REJECTED = Counter(
    "webconnect_dashboards_values_rejected", "Widget value paths that were missing or not numeric, by reason", ["code"]
)
INGESTED = Counter("webconnect_dashboards_ingested_messages", "Messages published through the batch ingest endpoint")
