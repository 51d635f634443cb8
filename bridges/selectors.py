"""The bridge settings as each process uses them: one snapshot of every enabled bridge, re-read now and then."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from bridges.models import MQTTBridge, RabbitMQBridge

AMQP = "amqp"
MQTT = "mqtt"
TARGETS = (AMQP, MQTT)


@dataclass(frozen=True)
class AmqpRoute:
    namespace: str
    exchange: str
    queue: str
    service_user: Any  # a User, or None without ingest


@dataclass(frozen=True)
class MqttRoute:
    namespace: str
    to_mqtt: bool
    from_mqtt: bool
    service_user: Any


@dataclass(frozen=True)
class Snapshot:
    amqp: dict[str, AmqpRoute] = field(default_factory=dict)
    mqtt: dict[str, MqttRoute] = field(default_factory=dict)

    def mirror_targets(self, namespace: str, sender_id: Any) -> list[str]:
        """Where a message of `namespace` sent by user `sender_id` is copied to.

        A message a bridge ingested (sent as its service account) is not sent back through the same bridge:
        an MQTT reading would otherwise return to the broker, and a queue bound to the mirror exchange loop.
        """
        targets = []
        amqp = self.amqp.get(namespace)
        if amqp is not None and amqp.exchange and not _sent_by(amqp.service_user, sender_id):
            targets.append(AMQP)
        mqtt = self.mqtt.get(namespace)
        if mqtt is not None and mqtt.to_mqtt and not _sent_by(mqtt.service_user, sender_id):
            targets.append(MQTT)
        return targets

    def signature(self) -> tuple[Any, ...]:
        """What the runner's connections depend on: a change restarts them."""
        return (
            tuple(
                sorted(
                    (r.namespace, r.exchange, r.queue, getattr(r.service_user, "pk", None)) for r in self.amqp.values()
                )
            ),
            tuple(
                sorted(
                    (r.namespace, r.to_mqtt, r.from_mqtt, getattr(r.service_user, "pk", None))
                    for r in self.mqtt.values()
                )
            ),
        )


def _sent_by(user: Any, sender_id: Any) -> bool:
    return user is not None and sender_id is not None and user.pk == sender_id


def load_snapshot() -> Snapshot:
    amqp = {
        bridge.namespace.name: AmqpRoute(
            bridge.namespace.name, bridge.mirror_exchange, bridge.ingest_queue, bridge.service_user
        )
        for bridge in RabbitMQBridge.objects.filter(enabled=True).select_related("namespace", "service_user")
    }
    mqtt = {
        bridge.namespace.name: MqttRoute(bridge.namespace.name, bridge.to_mqtt, bridge.from_mqtt, bridge.service_user)
        for bridge in MQTTBridge.objects.filter(enabled=True).select_related("namespace", "service_user")
    }
    return Snapshot(amqp, mqtt)


_cached: tuple[float, Snapshot] | None = None


async def asnapshot() -> Snapshot:
    """The snapshot, re-read after BRIDGES_CONFIG_SECONDS (0: on every call)."""
    global _cached
    now = time.monotonic()
    if _cached is None or now - _cached[0] >= settings.BRIDGES_CONFIG_SECONDS:
        _cached = (now, await sync_to_async(load_snapshot)())
    return _cached[1]


def snapshot_cache_clear() -> None:
    global _cached
    _cached = None
