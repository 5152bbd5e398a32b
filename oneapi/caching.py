"""Process-local caches and the bus that invalidates them in every process.

The relay hot path reads keys, users, channels and options from memory. Every write goes
through a service that calls `invalidate(kind, ident)`: local handlers run at once (after
commit), and the event is stored in `cache_events` for the other processes (Daphne nodes,
Celery workers), which poll it from a background thread. A full reload every SYNC_FREQUENCY
seconds is the safety net behind the events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

from django.conf import settings
from django.db import close_old_connections, connections, transaction

logger = logging.getLogger(__name__)

Handler = Callable[[str], None]
T = TypeVar("T")
_handlers: dict[str, list[Handler]] = defaultdict(list)
_REORDER_WINDOW_SECONDS = 5.0

# Event kinds.
KEY = "key"  # ident: the 48-char key string
USER = "user"  # ident: user id
CHANNELS = "channels"  # ident: "" (the routing table is reloaded whole)
OPTIONS = "options"  # ident: ""
BALANCES = "balances"  # ident: "<writer>|<user ids>|<key ids>": charges another process applied


def on_invalidate(kind: str) -> Callable[[Handler], Handler]:
    """Register a function called with the ident whenever `kind` is invalidated anywhere."""

    def register(handler: Handler) -> Handler:
        _handlers[kind].append(handler)
        return handler

    return register


def run_handlers(kind: str, ident: str) -> None:
    for handler in _handlers.get(kind, ()):
        try:
            handler(ident)
        except Exception:
            logger.exception("cache handler for %s:%s failed", kind, ident)


def invalidate(kind: str, ident: object = "") -> None:
    """Drop cached state for (kind, ident) here and, through the event table, everywhere.

    The event row is written in the caller's transaction, so a rolled-back write leaves no
    event. Local handlers run now and again after commit: a reload racing the uncommitted
    write could otherwise cache the old row.
    """
    from oneapi import cache_bus
    from oneapi.models import CacheEvent

    ident_text = str(ident)
    CacheEvent.objects.create(kind=kind, ident=ident_text)
    run_handlers(kind, ident_text)
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(lambda: run_handlers(kind, ident_text))
    # Other nodes hear it at once through Redis (after commit, so they reload the new row).
    transaction.on_commit(lambda: cache_bus.publish(kind, ident_text))


def announce(kind: str, ident: str) -> None:
    """Tell the other processes only (this one already knows): the event row and the Redis
    message, without running the local handlers."""
    from oneapi import cache_bus
    from oneapi.models import CacheEvent

    CacheEvent.objects.create(kind=kind, ident=ident)
    transaction.on_commit(lambda: cache_bus.publish(kind, ident))


class EventListener(threading.Thread):
    """Polls `cache_events` for other processes' writes; one per process, started lazily."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(name="oneapi-cache-events", daemon=True)
        self.interval = interval
        self.last_id: int | None = None
        self._low_water = 0
        self._applied: set[int] = set()
        self._recent: deque[tuple[float, int]] = deque()
        self.last_full_sync = time.monotonic()
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def poll_once(self) -> int:
        """Apply events newer than the low-water mark; returns how many were new.

        Ids can commit out of order on PostgreSQL and MySQL (a transaction that took id 7 may
        commit after one that took id 8), so the query looks back over ids seen in the last
        few seconds and skips the ones already applied.
        """
        from oneapi.models import CacheEvent

        now = time.monotonic()
        if self.last_id is None:
            latest = CacheEvent.objects.order_by("-id").values_list("id", flat=True).first()
            self.last_id = self._low_water = latest or 0
            return 0
        while self._recent and self._recent[0][0] < now - _REORDER_WINDOW_SECONDS:
            _, event_id = self._recent.popleft()
            self._applied.discard(event_id)
            self._low_water = max(self._low_water, event_id)
        events = list(
            CacheEvent.objects.filter(id__gt=self._low_water)
            .order_by("id")
            .values_list("id", "kind", "ident")[:5000]
        )
        applied = 0
        for event_id, kind, ident in events:
            if event_id in self._applied:
                continue
            self._applied.add(event_id)
            self._recent.append((now, event_id))
            self.last_id = max(self.last_id, event_id)
            run_handlers(kind, ident)
            applied += 1
        return applied

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.poll_once()
                if time.monotonic() - self.last_full_sync >= settings.SYNC_FREQUENCY:
                    self.last_full_sync = time.monotonic()
                    for kind in (CHANNELS, OPTIONS, KEY, USER):
                        run_handlers(kind, "*")
            except Exception:
                logger.exception("cache event poll failed")
            finally:
                close_old_connections()
        connections.close_all()


_listener: EventListener | None = None
_listener_lock = threading.Lock()


def start_event_listener() -> EventListener:
    global _listener
    with _listener_lock:
        if _listener is None or not _listener.is_alive():
            _listener = EventListener()
            _listener.start()
        return _listener


class Reloadable(Generic[T]):
    """A value loaded on first use and dropped whenever `kind` is invalidated anywhere."""

    def __init__(self, kind: str, load: Callable[[], T]) -> None:
        self._load = load
        self._value: T | None = None
        self._lock = threading.Lock()
        on_invalidate(kind)(self.drop)

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._load()
                value = self._value
        return value

    def peek(self) -> T | None:
        """The loaded value, or None when the next `get` would have to load it."""
        return self._value

    def drop(self, _ident: str = "") -> None:
        self._value = None
