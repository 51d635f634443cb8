"""The ASGI application: Django for HTTP, Channels for WebSockets."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webconnect.settings")

# Django must be set up before anything imports models (consumers do).
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from webconnect.handshake import HandshakeAuthMiddleware  # noqa: E402
from webconnect.kernel.startup import StartupMiddleware  # noqa: E402
from webconnect.routing import websocket_urlpatterns  # noqa: E402

# The first connection of any kind starts the process's background tasks (kernel/startup.py).
application = StartupMiddleware(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": HandshakeAuthMiddleware(URLRouter(websocket_urlpatterns)),
        }
    )
)
