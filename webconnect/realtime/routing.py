from __future__ import annotations

from django.urls import path

from webconnect.realtime.consumers import RealtimeConsumer

websocket_urlpatterns = [path("ws/", RealtimeConsumer.as_asgi())]
