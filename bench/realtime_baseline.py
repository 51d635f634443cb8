"""The baseline for bench/realtime.py: a plain Channels consumer fanning out with group_send on channels-redis.

Served by Daphne as `realtime_baseline:application` (PYTHONPATH=bench). Every
connection joins one group; a text frame "echo ..." is echoed back, any other
text frame is sent to the whole group through the channel layer, which is
the stock Channels way (one channel-layer message per subscriber).
"""

from __future__ import annotations

import os
from typing import Any

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",  # noqa: S106 - a throwaway process on 127.0.0.1
    INSTALLED_APPS=["channels"],
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")],
                "prefix": os.environ.get("BASELINE_PREFIX", "bench-baseline"),
                "capacity": 10_000,
            },
        }
    },
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class FanOutConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    groups = ["bench"]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is None:
            return
        if text_data.startswith("echo"):
            await self.send(text_data=text_data)
        else:
            await self.channel_layer.group_send("bench", {"type": "fan.out", "text": text_data})

    async def fan_out(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


application = URLRouter([path("ws/", FanOutConsumer.as_asgi())])
