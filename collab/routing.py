from __future__ import annotations

from django.urls import URLPattern, re_path

from collab.consumers import DocumentConsumer

# y-websocket clients connect to `${serverUrl}/${room}`: the room is the document id.
websocket_urlpatterns: list[URLPattern] = [
    re_path(r"^ws/docs/(?P<document_id>[0-9]{1,18})/?$", DocumentConsumer.as_asgi()),
]
