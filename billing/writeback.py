"""Writes this process's usage journal to the database in batches, off the response path."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import close_old_connections, connections

from billing.journal import AppliedBatch, Journal, apply_journal_of
from billing.ledger import Ledger

logger = logging.getLogger(__name__)


class WriteBack(threading.Thread):
    """Every `interval` seconds (or when woken), apply the journal and move the charges out of
    `pending`, then run `after_flush` under the same lock (the runtime reloads balances that
    changed in the database there, when no journal line can be half-applied).

    The order of `Journal.append` and `Ledger.settle` does not matter: moving a charge from
    pending to stored leaves the available balance unchanged, so a flush that lands between
    the two steps only makes `pending` briefly negative.
    """

    def __init__(
        self,
        journal: Journal,
        ledger: Ledger,
        interval: float,
        after_flush: Callable[[], None] | None = None,
        on_applied: Callable[[AppliedBatch], None] | None = None,
    ) -> None:
        super().__init__(name="oneapi-usage-writeback", daemon=True)
        self.journal = journal
        self.ledger = ledger
        self.interval = interval
        self.after_flush = after_flush
        self.on_applied = on_applied
        self._stopped = threading.Event()
        self._wake = threading.Event()
        self._flush_lock = threading.Lock()
        # How far our ledger knows the journal applied: a flush whose commit succeeded but
        # raised (its answer lost) leaves the database ahead, and the next flush catches up.
        self._reported_offset = 0

    def flush_once(self) -> int:
        with self._flush_lock:
            batch = apply_journal_of(
                self.journal.path, self.ledger, reported_offset=self._reported_offset
            )
            self._reported_offset = batch.end_offset
            if batch.records and self.on_applied is not None:
                self.on_applied(batch)
            if self.after_flush is not None:
                self.after_flush()
            return batch.records

    @property
    def lock(self) -> threading.Lock:
        """Held while a flush runs: balances reloaded under it cannot meet a half-applied
        batch (committed to the database, not yet moved out of `pending`)."""
        return self._flush_lock

    def wake(self) -> None:
        """Flush now rather than at the end of the interval."""
        self._wake.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stopped.is_set():
                break
            try:
                self.flush_once()
            except Exception:
                # The journal keeps every line; the next round retries from the same offset.
                logger.exception("usage write-back failed; will retry")
            finally:
                close_old_connections()
        # This thread's own connection must not outlive it (it would hold the database open).
        connections.close_all()

    def stop(self) -> None:
        """Stop the loop and write back what is left (on graceful shutdown)."""
        self._stopped.set()
        self._wake.set()
        if self.is_alive():
            self.join()
        self.flush_once()
