"""The RabbitMQ bridge through real processes: a live server, `manage.py runbridges` and a RabbitMQ node of the
test's own, restarted in the middle."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import aio_pika
import pytest
from django.db import connection

from bridges.models import RabbitMQBridge
from tests.bridges.support import (
    PrivateRabbitMQ,
    Runner,
    fresh,
    history,
    metric,
    own_redis_prefix,
    publish,
    start_runner,
    wait_until,
)
from webconnect.models import Namespace

# Broker (re)starts and runner processes take their time on a loaded machine.
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]


@pytest.fixture
def rabbitmq() -> Iterator[PrivateRabbitMQ]:
    broker = PrivateRabbitMQ()
    broker.start()
    yield broker
    broker.destroy()


async def bind_queue(url: str, exchange: str, queue: str) -> None:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        bound = await channel.declare_queue(queue, durable=True)
        await bound.bind(declared, routing_key="chat.#")


async def drain(url: str, queue: str, want: set[str], seconds: float) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message of `queue` until all ids in `want` arrived (or the time is up)."""
    received: list[aio_pika.abc.AbstractIncomingMessage] = []
    deadline = time.monotonic() + seconds
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        source = await channel.declare_queue(queue, durable=True)
        while time.monotonic() < deadline and not want <= {m.message_id for m in received}:
            message = await source.get(fail=False)
            if message is None:
                await asyncio.sleep(0.1)
                continue
            await message.ack()
            received.append(message)
    return received


async def send(url: str, queue: str, body: bytes, *, message_id: str, channel: str) -> None:
    async with await aio_pika.connect(url) as connection:
        amqp = await connection.channel(publisher_confirms=True)
        await amqp.default_exchange.publish(
            aio_pika.Message(body, message_id=message_id, headers={"channel": channel}), routing_key=queue
        )


def test_every_acknowledged_message_reaches_rabbitmq_once_after_dedup_across_a_broker_restart(
    rabbitmq: PrivateRabbitMQ,
    live_server_factory: Callable[..., Any],
    make_user: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    make_user("producer", staff=True)
    line = fresh("chat.line")
    service = make_user("bridge-svc")  # not staff: the default policies let signed-in users use chat.* only
    exchange, mirror_queue, ingest_queue = "wc.test.mirror", "wc.test.consumer", "wc.test.ingest"
    chat = Namespace.objects.get(name="chat")
    RabbitMQBridge.objects.create(
        namespace=chat, mirror_exchange=exchange, ingest_queue=ingest_queue, service_user=service
    )
    plant = Namespace.objects.create(name="plant")
    RabbitMQBridge.objects.create(namespace=plant, ingest_queue="wc.test.plant", service_user=service)
    token = mint_token("producer", scopes="realtime:read realtime:write")
    env = {
        **own_redis_prefix(),
        "BRIDGES_AMQP_URL": rabbitmq.url,
        "BRIDGES_CONFIG_SECONDS": "0",
        "METRICS_ALLOWED_IPS": "127.0.0.1",
    }
    server = live_server_factory(**env)
    runner: Runner = start_runner(str(connection.settings_dict["NAME"]), env)
    try:
        asyncio.run(bind_queue(rabbitmq.url, exchange, mirror_queue))
        acknowledged = [publish(server.url, token, line, {"n": n}) for n in range(10)]
        wait_until(lambda: metric(server.url, "webconnect_bridge_up", "amqp") == 1.0, 60, "the bridge is up")

        rabbitmq.stop()
        wait_until(lambda: metric(server.url, "webconnect_bridge_up", "amqp") == 0.0, 60, "the bridge is down")
        acknowledged += [publish(server.url, token, line, {"n": n}) for n in range(10, 20)]
        # The outage buffer holds what the platform acknowledged, on /metrics and the Operations figures.
        wait_until(
            lambda: (metric(server.url, "webconnect_bridge_buffered_messages", "amqp") or 0) >= 10, 30,
            "10 messages buffered",
        )  # fmt: skip
        ops = wait_until(
            lambda: [m for m in history(server.url, token, "sys.ops") if m["payload"]["bridges"]["buffered"] >= 10],
            30, "the Operations figures show the buffer",
        )  # fmt: skip
        assert ops[-1]["payload"]["bridges"]["up"] == {"amqp": 0.0}

        rabbitmq.start()
        acknowledged += [publish(server.url, token, line, {"n": n}) for n in range(20, 30)]
        received = asyncio.run(drain(rabbitmq.url, mirror_queue, set(acknowledged), 60))
        wait_until(
            lambda: metric(server.url, "webconnect_bridge_buffered_messages", "amqp") == 0.0, 30, "the buffer drained"
        )
    finally:
        runner.stop()
        server.stop()
    by_id = {message.message_id: message for message in received}
    assert set(by_id) == set(acknowledged), runner.log()
    # At-least-once: a consumer that drops repeated ids sees each acknowledged message exactly once, in order.
    ordered = [json.loads(by_id[mid].body) for mid in acknowledged]
    assert ordered == [{"n": n} for n in range(30)]
    sample = by_id[acknowledged[0]]
    assert sample.routing_key == line
    assert sample.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert sample.content_type == "application/json"
    assert sample.headers["channel"] == line
    epoch, offset = acknowledged[0].split(":")
    assert (sample.headers["epoch"], sample.headers["offset"]) == (epoch, int(offset))


def test_a_queue_feeds_channels_as_the_service_account_acknowledged_once_stored(
    rabbitmq: PrivateRabbitMQ,
    live_server_factory: Callable[..., Any],
    make_user: Callable[..., Any],
    mint_token: Callable[..., str],
) -> None:
    make_user("reader", staff=True)
    devices, plant_line = fresh("chat.devices"), fresh("plant.line")
    service = make_user("bridge-svc")
    chat = Namespace.objects.get(name="chat")
    RabbitMQBridge.objects.create(namespace=chat, ingest_queue="wc.test.in", service_user=service)
    plant = Namespace.objects.create(name="plant")
    RabbitMQBridge.objects.create(namespace=plant, ingest_queue="wc.test.plant", service_user=service)
    token = mint_token("reader", scopes="realtime:read")
    env = {**own_redis_prefix(), "BRIDGES_AMQP_URL": rabbitmq.url, "BRIDGES_CONFIG_SECONDS": "0"}
    server = live_server_factory(**env)
    runner = start_runner(str(connection.settings_dict["NAME"]), env)
    try:

        async def feed() -> None:
            await send(rabbitmq.url, "wc.test.in", b'{"n": 1}', message_id="m1", channel=devices)
            await send(rabbitmq.url, "wc.test.in", b'{"n": 1}', message_id="m1", channel=devices)  # redelivered
            await send(rabbitmq.url, "wc.test.in", b"not json", message_id="m2", channel=devices)
            await send(
                rabbitmq.url, "wc.test.in", b'{"n": 3}', message_id="m3", channel=plant_line
            )  # not its namespace
            await send(rabbitmq.url, "wc.test.plant", b'{"n": 4}', message_id="m4", channel=plant_line)  # forbidden
            await send(rabbitmq.url, "wc.test.in", b'{"n": 5}', message_id="m5", channel=devices)

        asyncio.run(_depths(rabbitmq.url, ["wc.test.in", "wc.test.plant"]))  # declared as the runner declares them
        asyncio.run(feed())
        messages = wait_until(
            lambda: (found := history(server.url, token, devices)) and len(found) >= 2 and found, 60,
            "two messages stored",
        )  # fmt: skip
        time.sleep(1)  # anything more (a duplicate) would have arrived by now
        messages = history(server.url, token, devices)
        leftover = asyncio.run(_depths(rabbitmq.url, ["wc.test.in", "wc.test.plant"]))
        plant_messages = history(server.url, token, plant_line)
    finally:
        runner.stop()
        server.stop()
    assert [m["payload"] for m in messages] == [{"n": 1}, {"n": 5}], runner.log()
    assert {m["header"]["from"]["name"] for m in messages} == {"bridge-svc"}
    assert plant_messages == []
    # Refused messages were rejected (to a dead-letter exchange if the queue has one), not left to spin.
    assert leftover == [0, 0]
    assert "forbidden" in runner.log() and "not JSON" in runner.log()


async def _depths(url: str, queues: list[str]) -> list[int]:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        depths = []
        for name in queues:
            queue = await channel.declare_queue(name, durable=True)
            depths.append(int(queue.declaration_result.message_count or 0))
        return depths
