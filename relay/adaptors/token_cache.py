"""Credentials derived from channel keys (signed JWTs, OAuth access tokens), cached per key.

An entry is used until shortly before it expires; then the next caller derives a new one
while the others keep using the old one (still valid), so a refresh never stalls traffic.
Only when there is no valid entry at all do callers wait, and then for a single fetch:
one lock per key makes sure twenty concurrent requests cause one token exchange, not
twenty. With `background_refresh` the early refresh runs in a daemon thread instead, so
even its caller does not wait (One API refreshes Baidu tokens this way).

Everything here is thread-safe: the relay's event loops, test threads and refresh threads
may all share one cache. Times are `time.monotonic()` seconds unless a clock is given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Derives a credential: (value, seconds it stays valid from now). Raises when it cannot.
Fetch = Callable[[], tuple[str, float]]


@dataclass(frozen=True)
class Credential:
    value: str
    expires_at: float  # unusable from then on
    refresh_at: float  # derive a new one from then on


class TokenCache:
    def __init__(
        self,
        refresh_margin: float,
        *,
        background_refresh: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`refresh_margin`: how long before expiry a credential is renewed. A credential
        shorter-lived than twice the margin is renewed at half its life instead, so it is
        never re-derived on every call."""
        self.refresh_margin = refresh_margin
        self.background_refresh = background_refresh
        self.clock = clock
        self._guard = threading.Lock()  # protects the two dicts
        self._entries: dict[str, Credential] = {}
        self._locks: dict[str, threading.Lock] = {}  # one refresh at a time per key

    def get(self, key: str, fetch: Fetch) -> str:
        entry = self.peek(key)
        now = self.clock()
        if entry is not None and now < entry.refresh_at:
            return entry.value
        lock = self._lock_for(key)
        if entry is not None and now < entry.expires_at:
            # Due for renewal but still good: whoever gets the lock renews, the rest go on.
            if not lock.acquire(blocking=False):
                return entry.value
            if self.background_refresh:
                threading.Thread(
                    target=self._refresh_and_release,
                    args=(key, fetch, lock),
                    name="token-refresh",
                    daemon=True,
                ).start()
                return entry.value
            try:
                return self._refresh(key, fetch).value
            finally:
                lock.release()
        with lock:
            entry = self.peek(key)  # another thread may have fetched it while we waited
            if entry is not None and self.clock() < entry.expires_at:
                return entry.value
            return self._refresh(key, fetch).value

    def peek(self, key: str) -> Credential | None:
        with self._guard:
            return self._entries.get(key)

    def invalidate(self, key: str, value: str | None = None) -> None:
        """Forget the credential of `key` (only if it is still `value`, when given: a
        failure reported with an old token must not drop the fresh one)."""
        with self._guard:
            entry = self._entries.get(key)
            if entry is not None and (value is None or entry.value == value):
                del self._entries[key]

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    def _refresh(self, key: str, fetch: Fetch) -> Credential:
        value, ttl = fetch()
        now = self.clock()
        ttl = max(float(ttl), 0.0)
        entry = Credential(
            value=value,
            expires_at=now + ttl,
            refresh_at=now + max(ttl - self.refresh_margin, ttl / 2),
        )
        with self._guard:
            self._entries[key] = entry
        return entry

    def _refresh_and_release(self, key: str, fetch: Fetch, lock: threading.Lock) -> None:
        try:
            self._refresh(key, fetch)
        except Exception:  # the old credential stays in use until it expires
            logger.warning("background credential refresh failed", exc_info=True)
        finally:
            lock.release()
