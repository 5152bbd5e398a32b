"""Websocket routes of the console (see `dashboard.consumers`), mounted by `oneapi.asgi`."""

from __future__ import annotations

from django.urls import path

from dashboard import consumers

websocket_urlpatterns = [
    path("ws/channel/test", consumers.ChannelTestConsumer.as_asgi()),
    path("ws/log", consumers.LogFollowConsumer.as_asgi()),
]
