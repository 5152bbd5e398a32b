"""Writes this process's usage journal to the database in batches, off the response path."""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections, connections

from billing.journal import Journal, apply_journal
from billing.ledger import Ledger

logger = logging.getLogger(__name__)


class WriteBack(threading.Thread):
    """Every `interval` seconds, apply the journal and move the charges out of `pending`.

    The order of `Journal.append` and `Ledger.settle` does not matter: moving a charge from
    pending to stored leaves the available balance unchanged, so a flush that lands between
    the two steps only makes `pending` briefly negative.
    """

    def __init__(self, journal: Journal, ledger: Ledger, interval: float) -> None:
        super().__init__(name="oneapi-usage-writeback", daemon=True)
        self.journal = journal
        self.ledger = ledger
        self.interval = interval
        self._stopped = threading.Event()
        self._flush_lock = threading.Lock()

    def flush_once(self) -> int:
        with self._flush_lock:
            batch = apply_journal(self.journal.path)
            if batch.records:
                self.ledger.applied(batch.user_charges, batch.key_charges)
            return batch.records

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
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
        if self.is_alive():
            self.join()
        self.flush_once()
