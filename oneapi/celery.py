"""The Celery app: configured from Django settings (CELERY_*), tasks autodiscovered."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "oneapi.settings")

app = Celery("oneapi")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="oneapi.ping")
def ping_task(value: str = "pong") -> str:
    """Round-trip check used by the health tests: proves a worker consumes from the broker."""
    return value
