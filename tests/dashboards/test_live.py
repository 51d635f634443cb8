"""Live path through real connections: ingest -> hub -> WebSocket subscriber and the recorder."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from dashboards import ops, recorder, selectors, services
from dashboards.demo import builtin_dashboards_ensure, producer_user
from dashboards.management.commands.demo_producer import Sensors
from dashboards.models import Dashboard, SeriesPoint
from webconnect.identity import ConnectionAuth, Principal
from webconnect.realtime.hub import get_hub

pytestmark = pytest.mark.django_db(transaction=True)


async def open_socket(token: str) -> WebsocketCommunicator:
    from webconnect.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/", headers=[(b"authorization", f"Bearer {token}".encode())])
    connected, code = await communicator.connect(timeout=5)
    assert connected, code
    return communicator


async def frames_of(communicator: WebsocketCommunicator, kind: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(200):
        if len(found) == count:
            break
        frame = json.loads(await communicator.receive_from(timeout=3))
        if frame["header"]["type"] == kind:
            found.append(frame)
    return found


async def test_ingested_points_reach_a_subscriber_and_the_store(alice: Any, admin_user: Any, mint_token: Any) -> None:
    dashboard = await sync_to_async(services.dashboard_create)(owner=alice, title="Live", visibility="public")
    await sync_to_async(services.widget_create)(
        dashboard=dashboard, kind="line", title="T", channel="demo.live", value_paths=["temp"]
    )
    rec = recorder.Recorder()
    rec.refresh(await sync_to_async(recorder.channel_paths)())
    hub = get_hub()
    hub.add("demo.live", rec)
    token = await sync_to_async(mint_token)("alice", "realtime:read")
    socket = await open_socket(token)
    try:
        await socket.send_to(text_data=json.dumps({"header": {"type": "subscribe", "channel": "demo.live", "id": "s"}}))
        assert (await frames_of(socket, "ack", 1))[0]["header"]["id"] == "s"
        principal = Principal(admin_user, ConnectionAuth(method="session"))
        result = await services.ingest_batch(
            principal=principal,
            channel="demo.live",
            payloads=[{"temp": 20 + i} for i in range(5)],
            value_paths={"temp"},
        )
        assert result["published"] == 5
        messages = await frames_of(socket, "message", 5)
        assert [m["payload"]["temp"] for m in messages] == [20, 21, 22, 23, 24]
        assert await sync_to_async(rec.flush)() == 5
        rows = await sync_to_async(selectors.series_query)(
            channel="demo.live", path="temp", from_ms=0, to_ms=2**62, step_ms=2**60
        )
        assert rows[0]["n"] == 5 and rows[0]["avg"] == 22.0
    finally:
        hub.remove("demo.live", rec)
        with contextlib.suppress(Exception):
            await socket.disconnect()


async def test_ops_figures_are_published_on_the_system_channel(admin_user: Any, mint_token: Any) -> None:
    token = await sync_to_async(mint_token)(admin_user.username, "realtime:read")
    socket = await open_socket(token)
    try:
        await socket.send_to(text_data=json.dumps({"header": {"type": "subscribe", "channel": "sys.ops", "id": "s"}}))
        assert (await frames_of(socket, "ack", 1))[0]["header"]["type"] == "ack"
        import asyncio

        task = asyncio.get_running_loop().create_task(ops.run(interval=0.1))
        try:
            figures = (await frames_of(socket, "message", 1))[0]["payload"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for key in ("connections", "subscriptions", "frames_in", "frames_out", "latency_ms", "errors", "db", "jobs"):
            assert key in figures
        assert figures["connections"] >= 1
        assert figures["frames_in"].get("subscribe", 0) >= 0
        assert figures["db"]["ok"] == 1
    finally:
        with contextlib.suppress(Exception):
            await socket.disconnect()


async def test_a_signed_in_non_staff_user_cannot_subscribe_to_the_ops_channel(alice: Any, mint_token: Any) -> None:
    token = await sync_to_async(mint_token)("alice", "realtime:read")
    socket = await open_socket(token)
    try:
        await socket.send_to(text_data=json.dumps({"header": {"type": "subscribe", "channel": "sys.ops", "id": "s"}}))
        error = (await frames_of(socket, "error", 1))[0]
        assert error["payload"]["code"] == "forbidden"
    finally:
        with contextlib.suppress(Exception):
            await socket.disconnect()


def test_figures_turn_counters_into_rates_and_percentiles() -> None:
    before = {
        ("webconnect_realtime_frames_in_total", (("type", "publish"),)): 10.0,
        ("webconnect_realtime_frame_seconds_bucket", (("le", "0.001"), ("type", "publish"))): 0.0,
        ("webconnect_realtime_frame_seconds_bucket", (("le", "0.01"), ("type", "publish"))): 0.0,
        ("webconnect_realtime_frame_seconds_bucket", (("le", "+Inf"), ("type", "publish"))): 0.0,
    }
    now = {
        ("webconnect_realtime_frames_in_total", (("type", "publish"),)): 30.0,
        ("webconnect_realtime_frame_seconds_bucket", (("le", "0.001"), ("type", "publish"))): 90.0,
        ("webconnect_realtime_frame_seconds_bucket", (("le", "0.01"), ("type", "publish"))): 100.0,
        ("webconnect_realtime_frame_seconds_bucket", (("le", "+Inf"), ("type", "publish"))): 100.0,
        ("webconnect_policy_decisions_total", (("cached", "no"), ("result", "deny"))): 4.0,
    }
    figures = ops.figures(now, before, 2.0)
    assert figures["frames_in"] == {"publish": 10.0}
    assert figures["latency_ms"]["p50"] == 1.0
    assert figures["latency_ms"]["p99"] == 10.0
    assert figures["policy"]["denials_per_s"] == 2.0


def test_builtin_dashboards_are_created_once() -> None:
    user = producer_user()
    demo, ops_dashboard = builtin_dashboards_ensure(owner=user)
    again = builtin_dashboards_ensure(owner=user)
    assert (demo.pk, ops_dashboard.pk) == (again[0].pk, again[1].pk)
    assert Dashboard.objects.count() == 2
    assert {w.kind for w in demo.widgets.all()} == {"line", "gauge", "stat", "bar", "table", "log"}
    assert demo.visibility == "public" and ops_dashboard.visibility == "private"


def test_demo_readings_stay_plausible_and_feed_every_demo_widget() -> None:
    sensors = Sensors(seed=1)
    demo, _ = builtin_dashboards_ensure(owner=producer_user())
    for i in range(200):
        reading = sensors.reading(float(i))
    assert 0 <= reading["pressure"] <= 10
    for widget in demo.widgets.exclude(kind="log"):
        assert services.extract_points(reading, widget.value_paths).problems == []
    assert not SeriesPoint.objects.exists()
