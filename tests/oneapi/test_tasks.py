from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from oneapi.models import CacheEvent
from oneapi.tasks import prune_cache_events_task

pytestmark = pytest.mark.django_db


def test_prune_drops_old_events_but_keeps_the_newest_row() -> None:
    old = timezone.now() - timedelta(hours=2)
    events = [CacheEvent.objects.create(kind="key", ident=str(i)) for i in range(3)]
    CacheEvent.objects.filter(pk__in=[e.pk for e in events]).update(created_at=old)
    fresh = CacheEvent.objects.create(kind="key", ident="fresh")

    assert prune_cache_events_task() == 3
    assert list(CacheEvent.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_prune_never_empties_the_table() -> None:
    old = timezone.now() - timedelta(hours=2)
    events = [CacheEvent.objects.create(kind="key", ident=str(i)) for i in range(2)]
    CacheEvent.objects.update(created_at=old)

    assert prune_cache_events_task() == 1
    assert list(CacheEvent.objects.values_list("pk", flat=True)) == [events[-1].pk]
