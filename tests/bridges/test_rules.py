"""The bridges' rules that need no broker: topic mapping, loop avoidance, settings validation, the bounded outbox."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings

from bridges import mapping, outbox, store
from bridges.models import MQTTBridge, RabbitMQBridge
from bridges.selectors import AMQP, MQTT, AmqpRoute, MqttRoute, Snapshot
from webconnect.models import Namespace
from webconnect.realtime.history import Position
from webconnect.realtime.hub import Published
from webconnect.realtime.selectors import anamespace_get


@pytest.mark.parametrize(
    ("topic", "channel"),
    [
        ("sensors/line1/temp", "sensors.line1.temp"),
        ("sensors/line-1/t_2", "sensors.line-1.t_2"),
        ("sensors", None),  # no name after the namespace
        ("sensors//temp", None),  # an empty level
        ("sensors/line.1/temp", None),  # would not map back to the same topic
        ("$SYS/broker/uptime", None),
        ("sensors/a b", None),  # not a valid channel name
    ],
)
def test_topics_map_to_channels_only_when_they_map_back(topic: str, channel: str | None) -> None:
    assert mapping.topic_to_channel(topic) == channel
    if channel is not None:
        assert mapping.channel_to_topic(channel) == topic


class _User:
    def __init__(self, pk: int) -> None:
        self.pk = pk


def test_a_bridge_never_sends_back_what_it_ingested_itself() -> None:
    amqp_service, mqtt_service = _User(1), _User(2)
    snapshot = Snapshot(
        amqp={"plant": AmqpRoute("plant", "x", "in", amqp_service)},
        mqtt={"plant": MqttRoute("plant", True, True, mqtt_service)},
    )
    assert snapshot.mirror_targets("plant", 99) == [AMQP, MQTT]
    assert snapshot.mirror_targets("plant", None) == [AMQP, MQTT]  # the server, anonymous
    assert snapshot.mirror_targets("plant", 2) == [AMQP]  # an MQTT reading goes to RabbitMQ, not back to MQTT
    assert snapshot.mirror_targets("plant", 1) == [MQTT]
    assert snapshot.mirror_targets("other", 99) == []


@pytest.mark.django_db
def test_an_ingesting_bridge_needs_its_service_account() -> None:
    namespace = Namespace.objects.create(name="plant")
    with pytest.raises(ValidationError, match="account"):
        RabbitMQBridge(namespace=namespace, ingest_queue="in").full_clean()
    with pytest.raises(ValidationError, match="account"):
        MQTTBridge(namespace=namespace, from_mqtt=True).full_clean()
    with pytest.raises(ValidationError, match="at least one direction"):
        MQTTBridge(namespace=namespace, from_mqtt=False, to_mqtt=False).full_clean()
    RabbitMQBridge(namespace=namespace, mirror_exchange="plant.events").full_clean()


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
@override_settings(BRIDGES_OUTBOX_MAX=3, BRIDGES_AMQP_URL="amqp://guest:guest@127.0.0.1:1/", BRIDGES_CONFIG_SECONDS=0)
async def test_a_full_outage_buffer_counts_what_it_could_not_hold(caplog: Any) -> None:
    from asgiref.sync import sync_to_async

    def configure() -> None:
        namespace = Namespace.objects.create(name="plant")
        RabbitMQBridge.objects.create(namespace=namespace, mirror_exchange="plant.events")

    await sync_to_async(configure)()
    namespace = await anamespace_get("plant")
    assert namespace is not None
    client = store.redis_client()
    await client.delete(store.stream_key(AMQP), store.dropped_key(AMQP))
    try:
        for offset in range(1, 6):
            text = f'{{"header":{{"type":"message","channel":"plant.a","offset":{offset}}},"payload":{offset}}}'
            await outbox.on_published(Published("plant.a", namespace, Position(offset, "e1"), text, {"user_id": None}))
        box = outbox.Outbox(client, AMQP)
        entries = await box.read(10, block_ms=10)
        assert [entry.message_id for entry in entries] == ["e1:1", "e1:2", "e1:3"]
        assert [entry.body() for entry in entries] == [b"1", b"2", b"3"]
        assert int(await client.get(store.dropped_key(AMQP))) == 2
        assert "outbox full" in caplog.text
        await box.done(entries)
        assert await client.xlen(store.stream_key(AMQP)) == 0
    finally:
        await client.delete(store.stream_key(AMQP), store.dropped_key(AMQP))
        await client.aclose()
        store._clients.clear()
        await sync_to_async(lambda: connection.close())()  # the ORM's thread, so the test database can be dropped


@pytest.mark.django_db
def test_an_existing_operations_dashboard_gets_the_bridge_widgets_once(make_user: Any) -> None:
    import importlib

    from django.apps import apps

    from dashboards import selectors as dashboard_selectors
    from dashboards import services as dashboards

    dashboard = dashboards.dashboard_create(owner=make_user("ops", staff=True), title="Operations", system="ops")
    migration = importlib.import_module("bridges.migrations.0002_ops_widgets")
    migration.add(apps, None)
    migration.add(apps, None)
    titles = sorted(dashboard.widgets.values_list("title", flat=True))
    assert titles == ["Bridge outage buffer (messages)", "Bridges up (1 = connected)"]
    # Not in the stored layout yet: the page places them at the first free spot.
    assert len(dashboard_selectors.layout_boxes(dashboard)) == 2
