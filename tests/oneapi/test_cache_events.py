from __future__ import annotations

import pytest

from oneapi import caching
from oneapi.models import CacheEvent

pytestmark = pytest.mark.django_db

KIND = "test-kind"


@pytest.fixture
def seen():
    idents: list[str] = []

    @caching.on_invalidate(KIND)
    def collect(ident: str) -> None:
        idents.append(ident)

    yield idents
    caching._handlers[KIND].remove(collect)
    if not caching._handlers[KIND]:
        del caching._handlers[KIND]


def test_first_poll_sets_watermark_and_applies_nothing(seen):
    CacheEvent.objects.create(kind=KIND, ident="old-1")
    old = CacheEvent.objects.create(kind=KIND, ident="old-2")
    listener = caching.EventListener()
    assert listener.poll_once() == 0
    assert listener.last_id == old.id
    assert seen == []
    # Old events stay unapplied on later polls too.
    assert listener.poll_once() == 0
    assert seen == []


def test_first_poll_on_empty_table():
    listener = caching.EventListener()
    assert listener.poll_once() == 0
    assert listener.last_id == 0


def test_new_events_are_applied_once_each(seen):
    listener = caching.EventListener()
    listener.poll_once()
    first = CacheEvent.objects.create(kind=KIND, ident="a")
    second = CacheEvent.objects.create(kind=KIND, ident="b")
    assert listener.poll_once() == 2
    assert seen == ["a", "b"]
    assert listener.last_id == second.id
    assert first.id < second.id

    third = CacheEvent.objects.create(kind=KIND, ident="c")
    assert listener.poll_once() == 1
    assert seen == ["a", "b", "c"]
    assert listener.last_id == third.id


def test_event_reread_inside_reorder_window_is_not_applied_twice(seen):
    listener = caching.EventListener()
    listener.poll_once()
    CacheEvent.objects.create(kind=KIND, ident="x")
    assert listener.poll_once() == 1
    # Still inside the window: the query looks back over "x" again but skips it.
    assert listener.poll_once() == 0
    assert listener.poll_once() == 0
    assert seen == ["x"]


def test_late_lower_id_inside_window_is_applied(seen):
    """An id that becomes visible after a higher one (out-of-order commit) is still applied."""
    listener = caching.EventListener()
    listener.poll_once()
    low = CacheEvent.objects.create(kind=KIND, ident="low")
    high = CacheEvent.objects.create(kind=KIND, ident="high")
    # Simulate "low" not being committed yet: absent during the first poll, then it appears.
    low_id = low.id
    low.delete()
    assert listener.poll_once() == 1
    assert seen == ["high"]
    CacheEvent.objects.create(id=low_id, kind=KIND, ident="low")
    # "low" is re-read (low-water mark has not moved past it) but has a new id for us.
    assert listener.poll_once() == 1
    assert seen == ["high", "low"]
    assert listener.last_id == high.id


def test_window_expiry_advances_low_water(seen, monkeypatch):
    listener = caching.EventListener()
    listener.poll_once()
    event = CacheEvent.objects.create(kind=KIND, ident="y")
    assert listener.poll_once() == 1
    monkeypatch.setattr(caching, "_REORDER_WINDOW_SECONDS", -1.0)
    assert listener.poll_once() == 0
    assert listener._low_water == event.id
    assert listener._applied == set()
    assert seen == ["y"]


def test_invalidate_runs_local_handler_and_stores_event(seen):
    caching.invalidate(KIND, 42)
    assert seen == ["42"]
    assert list(CacheEvent.objects.values_list("kind", "ident")) == [(KIND, "42")]


def test_failing_handler_does_not_stop_others(seen):
    def boom(_ident: str) -> None:
        raise RuntimeError("boom")

    caching._handlers[KIND].insert(0, boom)
    try:
        caching.run_handlers(KIND, "z")
    finally:
        caching._handlers[KIND].remove(boom)
    assert seen == ["z"]
