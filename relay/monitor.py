"""Automatic channel disabling (One API's `monitor`, facts §3.6).

Two rules, both judged off the response path:

- error-based: an error that says the channel's account is dead disables the channel when
  AutomaticDisableChannelEnabled is on. One API acts on the first such error; a channel may
  ask for more with `disable_after_failures` in its config JSON (that many in a row, a success
  in between starts over; errors that say nothing about the account neither count nor reset).
- metric-based (ENABLE_METRIC): a rolling window of the channel's last METRIC_QUEUE_SIZE
  results; once full, a success rate under METRIC_SUCCESS_RATE_THRESHOLD disables the
  channel whatever AutomaticDisableChannelEnabled says, and the window starts empty again.

With REDIS_CONN_STRING the windows and failure streaks live in Redis, so every node judges a
channel on the same history; without it, in this process. Redis calls run in a thread, and a
disable is a database write on Django's sync thread: the event loop never waits on either.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings

from channels_mgmt.models import ChannelStatus
from channels_mgmt.services import set_channel_status
from oneapi import notify
from oneapi.options import OptionSnapshot
from relay import metrics
from relay.errors import RelayError

logger = logging.getLogger(__name__)

DISABLING_TYPES = frozenset(
    {"insufficient_quota", "authentication_error", "permission_error", "forbidden"}
)
DISABLING_CODES = frozenset({"invalid_api_key", "account_deactivated"})
DISABLING_PHRASES = (
    "your access was terminated",
    "violation of our policies",
    "your credit balance is too low",
    "organization has been disabled",
    "credit",
    "balance",
    "permission denied",
    "organization has been restricted",
    "api key not valid",
    "api key expired",
    "已欠费",
)

STREAK_CONFIG_KEY = "disable_after_failures"
# Judgements in flight per process. Past this (Redis stalled under heavy traffic) new results
# are dropped rather than queued without bound, as One API's bounded metric channels do.
MAX_PENDING = 1024
# Idle channels' Redis keys go away by themselves.
WINDOW_TTL_SECONDS = 7 * 24 * 3600
STREAK_TTL_SECONDS = 24 * 3600

T = TypeVar("T")

_pending: set[asyncio.Future[Any]] = set()


def should_disable(error: RelayError) -> bool:
    if error.status == 401:
        return True
    if error.type in DISABLING_TYPES or str(error.code or "") in DISABLING_CODES:
        return True
    message = error.message.lower()
    return any(phrase in message for phrase in DISABLING_PHRASES)


def failures_needed(config: Mapping[str, object] | None) -> int:
    """`disable_after_failures` from the channel's config; 1 (One API's one strike) when
    absent or not a positive integer."""
    raw = (config or {}).get(STREAK_CONFIG_KEY)
    if isinstance(raw, bool):
        return 1
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1
    return max(value, 1)


@dataclass(frozen=True)
class Window:
    size: int
    threshold: float


def metric_window() -> Window | None:
    """The metric rule's window, or None when ENABLE_METRIC is off."""
    if not settings.ENABLE_METRIC:
        return None
    return Window(max(int(settings.METRIC_QUEUE_SIZE), 1), settings.METRIC_SUCCESS_RATE_THRESHOLD)


# ---------------------------------------------------------------------------- stores


class Store(Protocol):
    remote: bool  # whether calls do I/O (and so must leave the event loop)
    errors: tuple[type[Exception], ...]  # what a call raises when the store is unreachable

    def success(self, channel_id: int, window: Window | None, reset_streak: bool) -> None: ...

    def failure(self, channel_id: int, window: Window) -> float | None:
        """Record a failure; the success rate when the full window falls under the threshold
        (the window is then emptied, so only one caller gets it), else None."""
        ...

    def strike(self, channel_id: int) -> int:
        """Count one more disabling error in a row; returns the streak."""
        ...

    def forget(self, channel_id: int) -> None: ...


def _rate(results: deque[bool] | list[bool]) -> float:
    return sum(results) / len(results)


class MemoryStore:
    remote = False
    errors: tuple[type[Exception], ...] = ()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[int, deque[bool]] = {}
        self._streaks: dict[int, int] = {}

    def _push(self, channel_id: int, success: bool, size: int) -> deque[bool]:
        window = self._windows.get(channel_id)
        if window is None or window.maxlen != size:
            window = deque(window or (), maxlen=size)
            self._windows[channel_id] = window
        window.append(success)
        return window

    def success(self, channel_id: int, window: Window | None, reset_streak: bool) -> None:
        with self._lock:
            if window is not None:
                self._push(channel_id, True, window.size)
            if reset_streak:
                self._streaks.pop(channel_id, None)

    def failure(self, channel_id: int, window: Window) -> float | None:
        with self._lock:
            results = self._push(channel_id, False, window.size)
            if len(results) < window.size:
                return None
            rate = _rate(results)
            if rate >= window.threshold:
                return None
            results.clear()
            return rate

    def strike(self, channel_id: int) -> int:
        with self._lock:
            streak = self._streaks.get(channel_id, 0) + 1
            self._streaks[channel_id] = streak
            return streak

    def forget(self, channel_id: int) -> None:
        with self._lock:
            self._windows.pop(channel_id, None)
            self._streaks.pop(channel_id, None)


_memory_store = MemoryStore()
_redis_stores: dict[tuple[str, str], Store] = {}
_stores_lock = threading.Lock()


def store() -> Store:
    """Redis when configured (shared by every node), else this process's memory."""
    url = settings.REDIS_CONN_STRING
    if not url:
        return _memory_store
    key = (url, settings.CACHE_KEY_PREFIX)
    with _stores_lock:
        found = _redis_stores.get(key)
        if found is None:
            # Imported here: a node without Redis never loads the client (~7 MB).
            from relay.monitor_redis import RedisStore

            found = _redis_stores[key] = RedisStore(url, settings.CACHE_KEY_PREFIX)
        return found


# ---------------------------------------------------------------------------- reports


def report_success(
    options: OptionSnapshot,
    channel_id: int,
    config: Mapping[str, object] | None = None,
    *,
    channel_type: int | None = None,
    latency: float | None = None,
) -> None:
    """Count a successful attempt: into the metric window, and ending a failure streak.

    `channel_type` and `latency` (seconds) only refine the Prometheus metrics; without them
    they come from the loaded routing table and the request's clock (see relay.metrics)."""
    metrics.record_upstream(channel_id, channel_type=channel_type, latency=latency)
    window = metric_window()
    reset = failures_needed(config) > 1 and options.get_bool("AutomaticDisableChannelEnabled")
    if window is None and not reset:
        return
    target = store()
    if not target.remote:
        target.success(channel_id, window, reset)
        return
    _spawn(_call(target, target.success, channel_id, window, reset))


def report_failure(
    options: OptionSnapshot,
    channel_id: int,
    channel_name: str,
    error: RelayError,
    config: Mapping[str, object] | None = None,
    *,
    channel_type: int | None = None,
    latency: float | None = None,
) -> None:
    """Judge an upstream failure off the response path; may disable the channel.

    The write invalidates the routing table here at once and in every other process within
    a poll interval, so no node keeps routing to it until the next full sync. `channel_type`
    and `latency` are for the metrics only, as in `report_success`."""
    metrics.record_upstream(channel_id, error.status, channel_type=channel_type, latency=latency)
    dead = options.get_bool("AutomaticDisableChannelEnabled") and should_disable(error)
    window = metric_window()
    if not dead and window is None:
        return
    _spawn(
        _judge_failure(
            store(), channel_id, channel_name, error.message, dead, failures_needed(config), window
        )
    )


async def _judge_failure(
    target: Store,
    channel_id: int,
    channel_name: str,
    reason: str,
    dead: bool,
    needed: int,
    window: Window | None,
) -> None:
    if dead:
        # One strike needs no count (and no Redis round trip).
        streak = 1 if needed <= 1 else await _call(target, target.strike, channel_id)
        if streak is not None and streak >= needed:
            if await _disable(target, channel_id):
                logger.warning(
                    "channel #%s (%s) disabled automatically: %s", channel_id, channel_name, reason
                )
                await _alert(notify.channel_disabled, channel_id, channel_name, reason)
            return
    if window is None:
        return
    rate = await _call(target, target.failure, channel_id, window)
    if rate is not None and await _disable(target, channel_id):
        logger.warning(
            "channel #%s (%s) disabled automatically: success rate %.2f%% over the last %s "
            "requests",
            channel_id,
            channel_name,
            rate * 100,
            window.size,
        )
        await _alert(
            notify.channel_disabled_by_metric, channel_id, rate, window.size, window.threshold
        )


async def _disable(target: Store, channel_id: int) -> bool:
    """AUTO_DISABLED, then a clean slate for when it comes back; False if it already was."""
    changed = await sync_to_async(set_channel_status, thread_sensitive=True)(
        channel_id, ChannelStatus.AUTO_DISABLED
    )
    if changed:
        await _call(target, target.forget, channel_id)
    return changed


async def _alert(send: Callable[..., object], *args: object) -> None:
    # Queuing the Celery task talks to the broker: off the loop, like the Redis calls.
    await asyncio.to_thread(send, *args)


async def _call(target: Store, method: Callable[..., T], *args: object) -> T | None:
    """A store call: inline for memory, in a thread for Redis; None when Redis failed."""
    try:
        if not target.remote:
            return method(*args)
        return await asyncio.to_thread(method, *args)
    except target.errors as error:
        logger.warning("channel monitor: Redis call failed: %r", error)
        return None


def _spawn(work: Coroutine[Any, Any, object]) -> None:
    if len(_pending) >= MAX_PENDING:
        work.close()
        logger.warning("channel monitor: %s judgements pending; result dropped", MAX_PENDING)
        return
    task = asyncio.ensure_future(work)
    _pending.add(task)
    task.add_done_callback(_finished)


def _finished(task: asyncio.Future[Any]) -> None:
    _pending.discard(task)
    # Nobody awaits these in production: say what went wrong (a locked database...) here.
    if not task.cancelled() and task.exception() is not None:
        logger.error("channel monitor: judgement failed", exc_info=task.exception())


async def drain() -> None:
    """Wait for the judgements in flight (tests and graceful shutdown)."""
    while _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)
