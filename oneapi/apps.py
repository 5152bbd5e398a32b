from __future__ import annotations

from django.apps import AppConfig


class OneApiConfig(AppConfig):
    name = "oneapi"
    verbose_name = "One API"
