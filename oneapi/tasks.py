from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from oneapi.celery import app
from oneapi.models import CacheEvent
from oneapi.notify_tasks import notify_root_task  # noqa: F401 (registers the task)

# Every process polls events within a second; an hour of history is far more than enough.
CACHE_EVENT_RETENTION = timedelta(hours=1)


@app.task(name="oneapi.prune_cache_events")
def prune_cache_events_task() -> int:
    cutoff = timezone.now() - CACHE_EVENT_RETENTION
    # The newest row always stays: SQLite reuses ids of an emptied table, and listeners that
    # remember the last id would then miss the next events.
    newest = CacheEvent.objects.order_by("-id").values_list("id", flat=True).first()
    deleted, _ = CacheEvent.objects.filter(created_at__lt=cutoff).exclude(pk=newest).delete()
    return deleted
