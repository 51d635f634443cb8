"""The MQTT bridge through real processes: devices (aiomqtt clients) on a Mosquitto of the test's own, a live
server, `manage.py runbridges`, and a dashboard in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import aiomqtt
import pytest
from django.db import connection, transaction
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bridges.models import MQTTBridge
from dashboards import services as dashboards
from policies.models import AccessPolicy
from policies.services import policy_version_bump
from tests.bridges.support import (
    PrivateMosquitto,
    fresh,
    history,
    metric,
    own_redis_prefix,
    publish,
    start_runner,
    wait_until,
)
from tests.browser.test_dashboards_browser import open_page, sign_in
from webconnect.models import Namespace

T = TypeVar("T")

# Broker (re)starts and runner processes take their time on a loaded machine.
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]


@pytest.fixture
def mosquitto() -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto()
    broker.start()
    yield broker
    broker.destroy()


def sensors_bridge(make_user: Callable[..., Any]) -> None:
    """Namespace `sensors` (server-only publish) bridged both ways, fed as a service account a policy lets publish."""
    service = make_user("mqtt-bridge")
    sensors = Namespace.objects.create(name="sensors", client_publish=False)
    MQTTBridge.objects.create(namespace=sensors, to_mqtt=True, from_mqtt=True, service_user=service)
    with transaction.atomic():
        AccessPolicy.objects.create(
            name="bridge-publishes-sensors",
            text='permit(principal is User, action == Action::"publish", resource is Channel)\n'
            'when { resource.namespace == "sensors" && context.auth_method == "bridge" };',
        )
        policy_version_bump()


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own (Playwright's sync API already runs a loop in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def device(broker: PrivateMosquitto, name: str, *, persistent: bool = False) -> aiomqtt.Client:
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 3600
    return aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=name, protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=not persistent, properties=properties,
    )  # fmt: skip


async def send_readings(broker: PrivateMosquitto, line: str, values: list[int]) -> None:
    """QoS 1: each publish returns once the broker acknowledged it."""
    async with device(broker, f"sensor-{line}") as client:
        for value in values:
            await client.publish(f"sensors/{line}/temp", json.dumps({"celsius": value, "seq": value}), qos=1)


@pytest.mark.browser
def test_device_readings_over_mqtt_move_a_dashboard_widget_in_chromium_and_commands_reach_devices(
    mosquitto: PrivateMosquitto,
    live_server_factory: Callable[..., Any],
    make_user: Callable[..., Any],
    mint_token: Callable[..., str],
    page: Any,
) -> None:
    sensors_bridge(make_user)
    line = fresh("line")
    owner = make_user("plant-owner", staff=True)
    dashboard = dashboards.dashboard_create(owner=owner, title="Line 1")
    stat = dashboards.widget_create(
        dashboard=dashboard, kind="stat", title="Line 1 temperature", channel=f"sensors.{line}.temp",
        value_paths=["celsius"], options={"decimals": 0},
    )  # fmt: skip
    env = {
        **own_redis_prefix(),
        "BRIDGES_MQTT_URL": mosquitto.url,
        "BRIDGES_CONFIG_SECONDS": "0",
        "METRICS_ALLOWED_IPS": "127.0.0.1",
    }
    server = live_server_factory(**env)
    runner = start_runner(str(connection.settings_dict["NAME"]), env)
    try:
        wait_until(lambda: metric(server.url, "webconnect_bridge_up", "mqtt") == 1.0, 60, "the bridge is up")
        sign_in(page, server, "plant-owner")
        open_page(page, f"{server.url}/dashboards/{dashboard.pk}/")
        page.wait_for_selector("[data-testid=live-status].live")
        page.wait_for_timeout(300)  # the subscribe acks are in
        run_async(send_readings(mosquitto, line, [41, 42, 43]))
        page.wait_for_function(
            f"document.querySelector('[data-testid=widget-{stat.pk}] .stat-value').textContent.startsWith('43')",
            timeout=20_000,
        )
        assert page.text_content(f"[data-testid=widget-{stat.pk}] [data-testid=widget-status]") == ""

        token = mint_token("plant-owner", scopes="realtime:write")

        async def command_round_trip() -> tuple[str, Any]:
            async with device(mosquitto, "actuator-line1") as client:
                await client.subscribe(f"sensors/{line}/cmd", qos=1)
                sent = await asyncio.to_thread(publish, server.url, token, f"sensors.{line}.cmd", {"setpoint": 20})
                async with asyncio.timeout(20):
                    async for message in client.messages:
                        return sent, message
            raise AssertionError("no command")

        sent, message = run_async(command_round_trip())
        stored = history(server.url, mint_token("plant-owner", scopes="realtime:read"), f"sensors.{line}.temp")
    finally:
        runner.stop()
        server.stop()
    assert json.loads(message.payload) == {"setpoint": 20}
    assert message.qos == 1
    assert dict(message.properties.UserProperty) == {"message-id": sent, "channel": f"sensors.{line}.cmd"}
    # Readings are published as the service account; the bridge never echoes its own readings back to MQTT.
    assert [m["payload"]["celsius"] for m in stored] == [41, 42, 43]
    assert {m["header"]["from"]["name"] for m in stored} == {"mqtt-bridge"}


def test_a_broker_restart_loses_nothing_acknowledged_in_either_direction(
    mosquitto: PrivateMosquitto,
    live_server_factory: Callable[..., Any],
    make_user: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    sensors_bridge(make_user)
    line = fresh("line")
    make_user("operator", staff=True)
    token = mint_token("operator", scopes="realtime:read realtime:write")
    env = {
        **own_redis_prefix(),
        "BRIDGES_MQTT_URL": mosquitto.url,
        "BRIDGES_CONFIG_SECONDS": "0",
        "METRICS_ALLOWED_IPS": "127.0.0.1",
        "BRIDGES_MQTT_CLIENT_ID": "bridge-under-test",
    }
    server = live_server_factory(**env)
    database = str(connection.settings_dict["NAME"])
    runner = start_runner(database, env)
    received: list[Any] = []

    async def actuator() -> None:
        """A device with a persistent session that reconnects, like a real one, until cancelled."""
        subscribed = False
        while True:
            try:
                async with device(mosquitto, "actuator-line1", persistent=True) as client:
                    if not subscribed:
                        await client.subscribe("sensors/+/cmd", qos=1)
                        subscribed = True
                    async for message in client.messages:
                        received.append(message)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    def commands(values: range) -> list[str]:
        return [publish(server.url, token, f"sensors.{line}.cmd", {"setpoint": value}) for value in values]

    async def scenario() -> list[str]:
        listening = asyncio.create_task(actuator())
        await asyncio.sleep(0.5)
        try:
            await asyncio.to_thread(
                wait_until, lambda: metric(server.url, "webconnect_bridge_up", "mqtt") == 1.0, 60, "the bridge is up"
            )
            await send_readings(mosquitto, line, list(range(5)))
            sent = await asyncio.to_thread(commands, range(3))
            # The bridge is away: the broker keeps the readings it acknowledged in the bridge's session.
            await asyncio.to_thread(runner.stop)
            await send_readings(mosquitto, line, list(range(5, 10)))
            # The broker restarts (writing its sessions to disk); meanwhile the platform acknowledges commands.
            mosquitto.stop()
            sent += await asyncio.to_thread(commands, range(3, 8))
            mosquitto.start()
            await asyncio.sleep(1)
            restarted.append(start_runner(database, env))
            await asyncio.to_thread(
                wait_until,
                lambda: (
                    {_message_id(m) for m in received} >= set(sent)
                    and len(history(server.url, token, f"sensors.{line}.temp")) >= 10
                ),
                90,
                "every reading stored and every command delivered",
            )
            await asyncio.sleep(1)  # anything more (a duplicate) would have arrived by now
            return sent
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    restarted: list[Any] = []
    try:
        sent = asyncio.run(scenario())
        stored = history(server.url, token, f"sensors.{line}.temp")
    finally:
        runner.stop()
        for started in restarted:
            started.stop()
        server.stop()
    # Each reading the broker acknowledged is in the channel exactly once (QoS 1 redeliveries removed).
    assert [m["payload"]["seq"] for m in stored] == list(range(10)), runner.log()
    # Each command the platform acknowledged reached the device; repeats carry the same message id.
    by_id = {_message_id(m): json.loads(m.payload) for m in received}
    assert [by_id[mid] for mid in sent] == [{"setpoint": v} for v in range(8)]


def _message_id(message: Any) -> str:
    return str(dict(message.properties.UserProperty)["message-id"])
