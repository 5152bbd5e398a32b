"""The Celery task behind `oneapi.notify.alert_root`."""

from __future__ import annotations

from oneapi import notify
from oneapi.celery import app


@app.task(name="oneapi.notify_root")
def notify_root_task(title: str, body: str) -> dict[str, bool]:
    return notify.notify_root(title, body)
