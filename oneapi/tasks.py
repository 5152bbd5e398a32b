from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from oneapi.models import CacheEvent

# Every process polls events within a second; an hour of history is far more than enough.
CACHE_EVENT_RETENTION = timedelta(hours=1)


@shared_task(name="oneapi.prune_cache_events")
def prune_cache_events_task() -> int:
    cutoff = timezone.now() - CACHE_EVENT_RETENTION
    deleted, _ = CacheEvent.objects.filter(created_at__lt=cutoff).delete()
    return deleted
