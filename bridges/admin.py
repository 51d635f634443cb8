from __future__ import annotations

from django.contrib import admin

from bridges.models import MQTTBridge, RabbitMQBridge


@admin.register(RabbitMQBridge)
class RabbitMQBridgeAdmin(admin.ModelAdmin[RabbitMQBridge]):
    list_display = ("namespace", "enabled", "mirror_exchange", "ingest_queue", "service_user", "updated_at")
    list_filter = ("enabled",)
    list_select_related = ("namespace", "service_user")
    raw_id_fields = ("service_user",)


@admin.register(MQTTBridge)
class MQTTBridgeAdmin(admin.ModelAdmin[MQTTBridge]):
    list_display = ("namespace", "enabled", "to_mqtt", "from_mqtt", "service_user", "updated_at")
    list_filter = ("enabled", "to_mqtt", "from_mqtt")
    list_select_related = ("namespace", "service_user")
    raw_id_fields = ("service_user",)
