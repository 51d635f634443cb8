from __future__ import annotations

from django.urls import path

from webconnect.realtime import api

urlpatterns = [
    path("realtime/tickets/", api.TicketApi.as_view(), name="api-realtime-ticket"),
    path("channels/<str:channel>/publish/", api.ChannelPublishApi.as_view(), name="api-channel-publish"),
    path("channels/<str:channel>/history/", api.ChannelHistoryApi.as_view(), name="api-channel-history"),
    path("channels/<str:channel>/presence/", api.ChannelPresenceApi.as_view(), name="api-channel-presence"),
    path("channels/<str:channel>/events/", api.ChannelEventsApi.as_view(), name="api-channel-events"),
]
