from __future__ import annotations

from django.apps import AppConfig


class ChannelsMgmtConfig(AppConfig):
    name = "channels_mgmt"
