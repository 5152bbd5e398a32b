"""The shared cache of derived credentials: expiry, early renewal, one fetch at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from relay.adaptors.token_cache import TokenCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counter:
    """A fetch that hands out token-1, token-2, ... valid `ttl` seconds each."""

    def __init__(self, ttl: float = 100.0, delay: float = 0.0) -> None:
        self.ttl = ttl
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, float]:
        with self._lock:
            self.calls += 1
            number = self.calls
        if self.delay:
            time.sleep(self.delay)
        return f"token-{number}", self.ttl


def run_threads(count: int, target: Callable[[], str]) -> list[str]:
    barrier = threading.Barrier(count)
    results: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        value = target()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def test_a_credential_is_fetched_once_and_reused() -> None:
    clock, fetch = Clock(), Counter()
    cache = TokenCache(refresh_margin=10, clock=clock)

    assert cache.get("k", fetch) == "token-1"
    clock.now += 50
    assert cache.get("k", fetch) == "token-1"
    assert fetch.calls == 1


def test_keys_have_separate_credentials() -> None:
    cache = TokenCache(refresh_margin=10, clock=Clock())
    first, second = Counter(), Counter()

    assert cache.get("a", first) == "token-1"
    assert cache.get("b", second) == "token-1"
    assert (first.calls, second.calls) == (1, 1)


def test_renewed_within_the_margin_before_expiry() -> None:
    clock, fetch = Clock(), Counter(ttl=100)
    cache = TokenCache(refresh_margin=10, clock=clock)
    cache.get("k", fetch)

    clock.now += 89.9
    assert cache.get("k", fetch) == "token-1"  # 10.1 s left: still used as is
    clock.now += 0.2
    assert cache.get("k", fetch) == "token-2"  # inside the margin: renewed before expiry
    entry = cache.peek("k")
    assert entry is not None
    assert entry.expires_at == pytest.approx(clock.now + 100)
    assert entry.refresh_at == pytest.approx(clock.now + 90)


def test_short_lived_credentials_are_renewed_at_half_life() -> None:
    clock, fetch = Clock(), Counter(ttl=10)
    cache = TokenCache(refresh_margin=3600, clock=clock)
    cache.get("k", fetch)

    clock.now += 4.9
    assert cache.get("k", fetch) == "token-1"
    clock.now += 0.2
    assert cache.get("k", fetch) == "token-2"


def test_an_expired_credential_is_never_returned() -> None:
    clock, fetch = Clock(), Counter(ttl=100)
    cache = TokenCache(refresh_margin=10, background_refresh=True, clock=clock)
    cache.get("k", fetch)

    clock.now += 100
    assert cache.get("k", fetch) == "token-2"  # expired: the caller waits for a new one
    assert fetch.calls == 2


def test_a_failed_fetch_propagates_and_is_not_cached() -> None:
    cache = TokenCache(refresh_margin=10, clock=Clock())

    def broken() -> tuple[str, float]:
        raise RuntimeError("token endpoint down")

    with pytest.raises(RuntimeError, match="token endpoint down"):
        cache.get("k", broken)
    assert cache.peek("k") is None
    assert cache.get("k", Counter()) == "token-1"


def test_invalidate_drops_only_the_named_value() -> None:
    cache = TokenCache(refresh_margin=10, clock=Clock())
    fetch = Counter()
    cache.get("k", fetch)

    cache.invalidate("k", value="token-0")  # a stale report about an older token
    assert cache.get("k", fetch) == "token-1"
    cache.invalidate("k", value="token-1")
    assert cache.get("k", fetch) == "token-2"
    cache.invalidate("k")
    assert cache.get("k", fetch) == "token-3"


def test_twenty_threads_on_a_cold_cache_cause_one_fetch() -> None:
    fetch = Counter(delay=0.2)
    cache = TokenCache(refresh_margin=10)

    results = run_threads(20, lambda: cache.get("k", fetch))

    assert results == ["token-1"] * 20
    assert fetch.calls == 1


def test_twenty_threads_during_renewal_cause_one_fetch_and_do_not_wait() -> None:
    clock = Clock()
    cache = TokenCache(refresh_margin=10, clock=clock)
    cache.get("k", Counter())
    clock.now += 95  # inside the margin, not expired
    slow = Counter(delay=0.3)
    slow.calls = 1  # numbering goes on from token-1

    results = run_threads(20, lambda: cache.get("k", slow))

    assert slow.calls == 2  # exactly one renewal
    assert results.count("token-2") == 1  # the renewing thread
    assert results.count("token-1") == 19  # the rest kept using the valid one
    assert cache.get("k", slow) == "token-2"


def test_background_renewal_returns_at_once_and_runs_once() -> None:
    clock = Clock()
    cache = TokenCache(refresh_margin=10, background_refresh=True, clock=clock)
    cache.get("k", Counter())
    clock.now += 95
    slow = Counter(delay=0.3)
    slow.calls = 1

    started = time.monotonic()
    results = run_threads(20, lambda: cache.get("k", slow))

    assert time.monotonic() - started < 0.3  # nobody waited for the exchange
    assert results == ["token-1"] * 20
    deadline = time.monotonic() + 5
    while cache.get("k", slow) != "token-2" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.get("k", slow) == "token-2"
    assert slow.calls == 2


def test_a_failed_background_renewal_keeps_the_valid_credential() -> None:
    clock = Clock()
    cache = TokenCache(refresh_margin=10, background_refresh=True, clock=clock)
    cache.get("k", Counter())
    clock.now += 95
    attempts = threading.Event()

    def broken() -> tuple[str, float]:
        attempts.set()
        raise RuntimeError("down")

    assert cache.get("k", broken) == "token-1"
    assert attempts.wait(5)
    time.sleep(0.05)
    assert cache.get("k", Counter()) in ("token-1", "token-2")  # kept, or renewed again
    entry = cache.peek("k")
    assert entry is not None and clock.now < entry.expires_at
