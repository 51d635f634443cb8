"""Services tier: two live Daphne processes on PostgreSQL + Redis, each running the recorder and the ops publisher."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from webconnect_client import Client

from dashboards import selectors, services
from dashboards.models import SeriesPoint

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def _get(url: str) -> None:
    with urllib.request.urlopen(url, timeout=5):  # noqa: S310  (a local test server)
        pass


def _ingest(server: Any, token: str, channel: str, messages: list[Any]) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310
        f"{server.url}/api/dashboards/ingest/",
        data=json.dumps({"channel": channel, "messages": messages}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return dict(json.loads(response.read()))


async def test_two_processes_record_each_point_once_and_both_publish_figures(
    live_server_factory: Callable[..., Any], make_user: Any, mint_token: Callable[..., str]
) -> None:
    staff = await sync_to_async(make_user)("operator", staff=True)
    dashboard = await sync_to_async(services.dashboard_create)(owner=staff, title="Cluster")
    await sync_to_async(services.widget_create)(
        dashboard=dashboard, kind="line", title="T", channel="demo.cluster", value_paths=["v"]
    )
    token = await sync_to_async(mint_token)("operator", "dashboards:write realtime:read realtime:write")
    shared = tempfile.mkdtemp(prefix="webconnect-prom-dash-")
    # A Redis namespace of their own: other live servers of this test run also run recorders
    # and would compete for the one-writer lease (and count the points in their own metrics).
    own = {"REALTIME_REDIS_PREFIX_OWN": f"cluster-{uuid.uuid4().hex[:8]}:rt"}
    one = live_server_factory(DASHBOARDS_OPS_INTERVAL_MS="300", PROMETHEUS_MULTIPROC_DIR=shared, **own)
    two = live_server_factory(DASHBOARDS_OPS_INTERVAL_MS="300", PROMETHEUS_MULTIPROC_DIR=shared, **own)
    for server in (one, two):  # the first HTTP request starts the background tasks
        await asyncio.to_thread(_get, f"{server.url}/healthz")

    async with Client(f"{one.ws_url}/ws/", token=token) as client:
        figures = await client.subscribe("sys.ops")
        processes: set[str] = set()
        deadline = time.monotonic() + 15
        while len(processes) < 2 and time.monotonic() < deadline:
            message = await figures.get(timeout=5)
            processes.add(message.payload["process"])
            assert message.payload["db"]["ok"] == 1 and message.payload["redis"]["ok"] == 1
        assert len(processes) == 2, processes

    await asyncio.sleep(2.5)  # both recorders have subscribed to the widget channel
    result = await asyncio.to_thread(_ingest, two, token, "demo.cluster", [{"v": i} for i in range(15)])
    assert result["published"] == 15 and result["problems"] == []
    result = await asyncio.to_thread(_ingest, one, token, "demo.cluster", [{"v": i} for i in range(15, 20)])
    assert result["published"] == 5

    async def recorded() -> int:
        return await sync_to_async(SeriesPoint.objects.filter(channel="demo.cluster").count)()

    for _ in range(50):
        if await recorded() >= 20:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.5)  # a second writer would have flushed by now
    assert await recorded() == 20
    rows = await sync_to_async(selectors.series_query)(
        channel="demo.cluster", path="v", from_ms=0, to_ms=2**62, step_ms=2**60
    )
    assert rows[0]["avg"] == 9.5  # bucketing by integer division on PostgreSQL bigint

    # /metrics (multiprocess mode) adds up both processes: 20 ingested, 20 points written once.
    def scrape() -> dict[str, float]:
        request = urllib.request.Request(  # noqa: S310
            f"{one.url}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        return {
            line.split()[0]: float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("webconnect_dashboards_") and not line.startswith("#")
        }

    figures = await asyncio.to_thread(scrape)
    assert figures["webconnect_dashboards_ingested_messages_total"] == 20.0, figures
    assert figures["webconnect_dashboards_points_recorded_total"] == 20.0, figures
    one.stop()
    two.stop()
