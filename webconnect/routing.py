"""All WebSocket routes: each app exports its own `websocket_urlpatterns`."""

from __future__ import annotations

from collab.routing import websocket_urlpatterns as collab_routes
from dashboards.routing import websocket_urlpatterns as dashboard_routes
from policies.routing import websocket_urlpatterns as policy_routes
from webconnect.realtime.routing import websocket_urlpatterns as realtime_routes

websocket_urlpatterns = [*collab_routes, *dashboard_routes, *policy_routes, *realtime_routes]
