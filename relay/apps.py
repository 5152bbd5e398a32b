from __future__ import annotations

from django.apps import AppConfig


class RelayConfig(AppConfig):
    name = "relay"
