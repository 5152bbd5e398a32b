"""The Celery task behind `oneapi.notify.alert_root`."""

from __future__ import annotations

from celery import shared_task

from oneapi import notify


@shared_task(name="oneapi.notify_root")
def notify_root_task(title: str, body: str) -> dict[str, bool]:
    return notify.notify_root(title, body)
