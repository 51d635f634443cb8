"""Per-namespace bridge settings, edited by administrators: where a namespace's messages go and come from.

The broker addresses and credentials are deployment settings (BRIDGES_AMQP_URL, BRIDGES_MQTT_URL, from the
environment); a row here says only what to do with a namespace's channels.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from webconnect.models import Namespace


class RabbitMQBridge(models.Model):
    """Mirror a namespace to an AMQP topic exchange and/or ingest a queue into its channels."""

    namespace = models.OneToOneField(Namespace, on_delete=models.CASCADE, related_name="rabbitmq_bridge")
    enabled = models.BooleanField(default=True)
    mirror_exchange = models.CharField(
        max_length=255,
        blank=True,
        help_text="Topic exchange every published message is copied to (routing key = channel, message id = "
        "epoch:offset, persistent, publisher confirms). Empty: no mirror.",
    )
    ingest_queue = models.CharField(
        max_length=255,
        blank=True,
        help_text="Durable queue whose messages are published into this namespace's channels (channel = the "
        "'channel' header, else the routing key); acknowledged once stored. Empty: no ingest.",
    )
    service_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Ingested messages are published as this account, under its access policies and rate limits.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "RabbitMQ bridge"
        ordering = ["namespace__name"]

    def __str__(self) -> str:
        return f"RabbitMQ bridge of {self.namespace}"

    def clean(self) -> None:
        if self.ingest_queue and self.service_user_id is None:
            raise ValidationError({"service_user": "An ingest queue needs the account its messages are published as."})
        if not self.ingest_queue and not self.mirror_exchange:
            raise ValidationError("Set a mirror exchange, an ingest queue, or both.")


class MQTTBridge(models.Model):
    """Map a namespace's channels to MQTT topics, both ways: `sensors.line1.temp` <-> `sensors/line1/temp`."""

    namespace = models.OneToOneField(Namespace, on_delete=models.CASCADE, related_name="mqtt_bridge")
    enabled = models.BooleanField(default=True)
    to_mqtt = models.BooleanField(
        default=True,
        help_text="Publish every message of the namespace's channels to its topic (QoS 1), except those this "
        "bridge ingested itself.",
    )
    from_mqtt = models.BooleanField(
        default=True,
        help_text="Subscribe to <namespace>/# (QoS 1) and publish what devices send into the matching channels.",
    )
    service_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Messages from MQTT are published as this account, under its access policies and rate limits.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "MQTT bridge"
        ordering = ["namespace__name"]

    def __str__(self) -> str:
        return f"MQTT bridge of {self.namespace}"

    def clean(self) -> None:
        if self.from_mqtt and self.service_user_id is None:
            raise ValidationError({"service_user": "Ingest from MQTT needs the account its messages are published as."})
        if not self.from_mqtt and not self.to_mqtt:
            raise ValidationError("Choose at least one direction.")
