"""The per-process state of a relay server: quota ledger, usage journal and their upkeep.

`start()` runs once in each server process (from the ASGI module): it recovers the journals
of dead processes, opens this process's journal, and starts the write-back and cache-event
threads. Tests build a `Runtime` of their own and `install` it, flushing by hand.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from django.conf import settings

from accounts.models import User
from billing import log_stream
from billing.journal import (
    AppliedBatch,
    Journal,
    UsageRecord,
    forget_journal,
    recover_orphaned_journals,
)
from billing.ledger import KEY, USER, Reservation, ledger_for
from billing.models import ApiKey
from billing.writeback import WriteBack
from oneapi import cache_bus, caching
from relay import metrics
from relay.estimates import CostEstimates

logger = logging.getLogger(__name__)


UPKEEP_SECONDS = 2.0  # heartbeat (its TTL is 15 s) and re-assertion of the shared ledger


def _user_quotas(ids: list[int]) -> dict[int, int]:
    return dict(User.objects.filter(pk__in=ids).values_list("id", "quota"))


def _key_quotas(ids: list[int]) -> dict[int, int]:
    return dict(ApiKey.objects.filter(pk__in=ids).values_list("id", "remain_quota"))


def journal_directory() -> Path:
    return Path(settings.DATA_DIR) / "journal"


def writeback_interval() -> float:
    # One API writes at once unless batching is on; the journal already makes each charge
    # durable, so "at once" here means within half a second.
    return float(settings.BATCH_UPDATE_INTERVAL) if settings.BATCH_UPDATE_ENABLED else 0.5


class Runtime:
    def __init__(self, directory: Path, interval: float | None = None) -> None:
        self.journal = Journal(directory)
        # Both the node id and the writer id of the shared ledger: one journal per process.
        self.ledger = ledger_for(self.journal.path.name)
        self.estimates = CostEstimates()
        self.writeback = WriteBack(
            self.journal,
            self.ledger,
            writeback_interval() if interval is None else interval,
            after_flush=self.reload_stale_balances,
            on_applied=self.applied,
        )
        self._key_ids: dict[str, int] = {}
        self._stale_users: set[int] = set()
        self._stale_keys: set[int] = set()
        self._stale_lock = threading.Lock()
        self._stopped = False
        self._next_upkeep = 0.0
        self.ledger.heartbeat_and_reassert()  # other nodes must see us alive from the start

    # --- balances ------------------------------------------------------------------------
    def has_balances(self, user_id: int, key_id: int | None) -> bool:
        return self.ledger.has_user(user_id) and (key_id is None or self.ledger.has_key(key_id))

    def load_balances(self, user_id: int, key: str, key_id: int) -> None:
        """The cold path (sync): read the balances this process does not know yet."""
        self._key_ids[key] = key_id
        if not self.ledger.has_user(user_id):
            self.reload_balances(users=[user_id])
        if not self.ledger.has_key(key_id):
            self.reload_balances(keys=[key_id])

    def reload_balances(self, users: Sequence[int] = (), keys: Sequence[int] = ()) -> None:
        """Read balances from the database into the ledger (sync). Those a concurrent
        write-back kept the shared ledger from storing are marked stale, to retry after the
        next flush."""
        with self.writeback.lock:
            retry = self._refresh(users, keys)
        if retry:
            self.writeback.wake()

    def _refresh(self, users: Iterable[int], keys: Iterable[int]) -> bool:
        """Reload these balances; those to retry go back to the stale sets (True if any)."""
        retry_users = self.ledger.refresh(USER, users, _user_quotas)
        retry_keys = self.ledger.refresh(KEY, keys, _key_quotas)
        with self._stale_lock:
            self._stale_users.update(retry_users)
            self._stale_keys.update(retry_keys)
        return bool(retry_users or retry_keys)

    def mark_user_stale(self, ident: str) -> None:
        with self._stale_lock:
            if ident == "*":
                self._stale_users.update(self.ledger.user_ids())
                self._stale_keys.update(self.ledger.key_ids())
            else:
                self._stale_users.add(int(ident))
        self.writeback.wake()

    def mark_key_stale(self, ident: str) -> None:
        with self._stale_lock:
            if ident == "*":
                self._stale_keys.update(self.ledger.key_ids())
            elif ident in self._key_ids:
                self._stale_keys.add(self._key_ids[ident])
        self.writeback.wake()

    @property
    def writer_id(self) -> str:
        return self.journal.path.name

    def applied(self, batch: AppliedBatch) -> None:
        self.announce_applied(batch)
        log_stream.publish_logs(batch.logs)  # to the console's live log views

    def announce_applied(self, batch: AppliedBatch) -> None:
        """Other nodes hold these balances in their own ledgers: tell them to reload, so
        charges made here count there within a flush interval, not a SYNC_FREQUENCY."""
        users = ",".join(str(user_id) for user_id in sorted(batch.user_charges))
        keys = ",".join(str(key_id) for key_id in sorted(batch.key_charges))
        caching.announce(caching.BALANCES, f"{self.writer_id}|{users}|{keys}")

    def balances_changed_elsewhere(self, ident: str) -> None:
        writer, _, ids = ident.partition("|")
        if writer == self.writer_id:
            return
        users, _, keys = ids.partition("|")
        known_users = set(self.ledger.user_ids())
        known_keys = set(self.ledger.key_ids())
        with self._stale_lock:
            self._stale_users.update(
                int(i) for i in users.split(",") if i and int(i) in known_users
            )
            self._stale_keys.update(int(i) for i in keys.split(",") if i and int(i) in known_keys)
        self.writeback.wake()

    def reload_stale_balances(self) -> None:
        """Runs under the write-back lock, right after the journal was applied: the database
        then holds every charge that left `pending`, so its values can replace `stored`."""
        self._upkeep_shared_ledger()
        with self._stale_lock:
            users, self._stale_users = self._stale_users, set()
            keys, self._stale_keys = self._stale_keys, set()
        self._refresh(users, keys)

    def _upkeep_shared_ledger(self) -> None:
        """Every few seconds: keep our heartbeat and our fields in the shared ledger, and
        reload the balances Redis lost (it restarted, or evicted them)."""
        now = time.monotonic()
        if now < self._next_upkeep:
            return
        self._next_upkeep = now + UPKEEP_SECONDS
        if not self.ledger.heartbeat_and_reassert():
            return
        try:
            users, keys = self.ledger.missing_balances()
        except Exception:
            logger.warning("could not check the shared ledger", exc_info=True)
            return
        with self._stale_lock:
            self._stale_users.update(users)
            self._stale_keys.update(keys)

    # --- charges ---------------------------------------------------------------------------
    def settle(self, reservation: Reservation, record: UsageRecord) -> None:
        """Make the charge durable (the journal line), then replace the reservation by it."""
        self.journal.append(record)
        self.ledger.settle(reservation, record.quota)
        metrics.record_usage(record)

    def flush(self) -> int:
        return self.writeback.flush_once()

    def start_threads(self) -> None:
        self.writeback.start()

    def stop(self) -> None:
        """Graceful shutdown: write back everything journaled, then release the journal."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.writeback.stop()
        except Exception:
            logger.exception("final usage write-back failed; the journal stays for recovery")
            self.journal.close()
            return
        self.journal.close()
        self.ledger.stop()
        # Everything is applied: a journal left behind would only be replayed for nothing,
        # or worse, into a database that was rebuilt since (offsets gone with it).
        forget_journal(self.journal.path)


_current: Runtime | None = None
_install_lock = threading.Lock()


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("the relay runtime is not started")
    return _current


def install(runtime: Runtime | None) -> None:
    global _current
    with _install_lock:
        _current = runtime


@caching.on_invalidate(caching.USER)
def _user_changed(ident: str) -> None:
    if _current is not None:
        _current.mark_user_stale(ident)


@caching.on_invalidate(caching.BALANCES)
def _balances_changed(ident: str) -> None:
    if _current is not None and ident != "*":
        _current.balances_changed_elsewhere(ident)


@caching.on_invalidate(caching.KEY)
def _key_changed(ident: str) -> None:
    if _current is not None:
        _current.mark_key_stale(ident)


def start() -> Runtime:
    """Once per server process: recover dead journals, open ours, start the threads."""
    with _install_lock:
        global _current
        if _current is not None:
            return _current
        directory = journal_directory()
        runtime = Runtime(directory)
        recovered = recover_orphaned_journals(directory, runtime.ledger)
        if recovered:
            logger.info("applied %d usage records left by stopped processes", recovered)
        runtime.start_threads()
        caching.start_event_listener()
        cache_bus.start_subscriber()
        _current = runtime
    atexit.register(runtime.stop)
    return runtime
