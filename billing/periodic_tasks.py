"""Celery tasks for billing's periodic jobs: log retention and low-quota reminders."""

from __future__ import annotations

import dataclasses
from typing import Any

from billing import quota_alerts, retention
from oneapi.celery import app


@app.task(name="billing.prune_logs")
def prune_logs_task() -> int:
    """Delete consume logs older than LOG_RETENTION_DAYS (a no-op when it is 0)."""
    return retention.prune_consume_logs()


@app.task(name="billing.send_quota_alerts")
def send_quota_alerts_task() -> dict[str, Any]:
    try:
        summary = quota_alerts.send_quota_alerts()
    except quota_alerts.ScanAlreadyRunning:
        # A slow scan (a slow SMTP server) is still going: this run has nothing to add.
        return {"skipped": "already running"}
    return dataclasses.asdict(summary)
