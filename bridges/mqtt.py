"""MQTT (v5, aiomqtt) both ways, on one connection with a persistent session.

From devices: the bridge subscribes to `<namespace>/#` at QoS 1 with No Local (it never hears what it
published itself) and acknowledges (PUBACK) a message only once it is stored in its channel, so the broker
keeps and redelivers whatever the bridge had not stored when it or the broker went down. Duplicates are
removed by the message's `message-id` user property, else by a hash of topic and payload, within
BRIDGES_DEDUP_SECONDS.
To devices: the outbox's messages are published to their topic at QoS 1 (user properties `message-id` =
epoch:offset and `channel`) and leave the outbox once the broker acknowledged them.
Devices authenticate to the broker as the broker is configured (its password file and ACLs); the bridge is
one more broker client, with the credentials of BRIDGES_MQTT_URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt
from django.conf import settings
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridges import mapping, metrics, outbox, store
from bridges.amqp import backoff
from bridges.ingest import Outcome, ingest
from bridges.selectors import MQTT, MqttRoute, Snapshot, asnapshot
from bridges.status import Status

logger = logging.getLogger(__name__)


def client_for(url: str) -> aiomqtt.Client:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"BRIDGES_MQTT_URL must start with mqtt:// or mqtts://, got {parts.scheme!r}")
    connect = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    # The broker keeps the session (subscriptions, unacknowledged QoS 1 messages) while the bridge is away.
    connect.SessionExpiryInterval = settings.BRIDGES_MQTT_SESSION_EXPIRY
    client = aiomqtt.Client(
        parts.hostname or "127.0.0.1",
        parts.port or (8883 if parts.scheme == "mqtts" else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        identifier=settings.BRIDGES_MQTT_CLIENT_ID,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=connect,
        keepalive=30,
        timeout=10,
        tls_params=aiomqtt.TLSParameters() if parts.scheme == "mqtts" else None,
    )
    # aiomqtt exposes no manual acknowledgement; paho (which it wraps) does: PUBACK only once stored.
    client._client.manual_ack_set(True)
    return client


async def run(url: str, snapshot: Snapshot, box: outbox.Outbox | None, status: Status) -> None:
    routes = {name: route for name, route in snapshot.mqtt.items() if route.from_mqtt}
    attempt = 0
    while True:
        try:
            async with client_for(url) as client:
                if routes:
                    await client.subscribe(
                        [(mapping.namespace_filter(name), SubscribeOptions(qos=1, noLocal=True)) for name in routes]
                    )
                status.up(MQTT, True)
                attempt = 0
                async with asyncio.TaskGroup() as group:
                    group.create_task(_ingest_loop(client, routes))
                    if box is not None:
                        group.create_task(_mirror_loop(client, box))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status.up(MQTT, False, _describe(exc))
            await asyncio.sleep(backoff(attempt))
            attempt += 1


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _user_property(properties: Any, name: str) -> str | None:
    for key, value in getattr(properties, "UserProperty", None) or []:
        if key == name:
            return str(value)
    return None


async def _ingest_loop(client: aiomqtt.Client, routes: dict[str, MqttRoute]) -> None:
    async for message in client.messages:
        topic = str(message.topic)
        channel = mapping.topic_to_channel(topic)
        route = routes.get(topic.split("/", 1)[0])
        payload = message.payload if isinstance(message.payload, bytes) else str(message.payload or "").encode()
        if route is None:
            logger.debug("bridges: mqtt topic %s has no bridge", topic)
        else:
            dedup = _user_property(message.properties, "message-id") or hashlib.sha256(payload).hexdigest()
            while True:
                result = await ingest(
                    target=MQTT, namespace=route.namespace, user=route.service_user, channel=channel,
                    body=payload, dedup=dedup,
                )  # fmt: skip
                if result.outcome is not Outcome.RETRY:
                    break  # stored, seen before, or never storable (counted and logged): acknowledge
                await asyncio.sleep(min(5.0, result.retry_after))
        client._client.ack(message.mid, message.qos)


async def _mirror_loop(client: aiomqtt.Client, box: outbox.Outbox) -> None:
    while True:
        entries = await box.read(settings.BRIDGES_BATCH_SIZE, block_ms=1000)
        if not entries:
            continue
        snapshot = await asnapshot()
        sendable = [e for e in entries if (r := snapshot.mqtt.get(e.namespace)) is not None and r.to_mqtt]
        orphans = [e for e in entries if e not in sendable]
        for entry in orphans:
            logger.warning("bridges: mqtt bridge of %s removed: message %s not sent", entry.channel, entry.message_id)
        if orphans:
            await box.client.incrby(store.dropped_key(MQTT), len(orphans))
        results = await asyncio.gather(*(_publish(client, entry) for entry in sendable), return_exceptions=True)
        confirmed = [e for e, result in zip(sendable, results, strict=True) if not isinstance(result, BaseException)]
        await box.done(confirmed + orphans)
        metrics.FORWARDED.labels(MQTT).inc(len(confirmed))
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]


async def _publish(client: aiomqtt.Client, entry: outbox.Entry) -> None:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = [("message-id", entry.message_id), ("channel", entry.channel)]
    properties.ContentType = "application/json"
    # Returns once the broker's PUBACK arrived (QoS 1).
    await client.publish(
        mapping.channel_to_topic(entry.channel), entry.body(), qos=1, properties=properties, timeout=10
    )
