"""In-memory quota balances with reservations: the relay's pre-consume and settle, no I/O.

For each user and each limited key the ledger knows the balance stored in the database as of
its last load (`stored`), the charges already settled but not yet written back (`pending`),
the reservations of requests in flight (`reserved`, One API's pre-consumed quota) and what
those requests are expected to cost in the end (`outstanding`, each request's estimate).

A request may start when both its user and its key can cover its reservation (One API's
rule), checked and taken under one lock. A reservation is usually far below the final cost
(no `max_tokens`, no reservation for the answer), so that rule alone lets N concurrent
requests overdraw by N settlement deltas. Hence the concurrency gate: a request runs beside
others only while the balance also covers every request in flight at its estimated cost;
otherwise it must wait until it can run alone (`MustWait`). A request that runs alone can
overdraw by at most its own settlement delta (what it cost beyond its reservation), and
with `max_tokens` set its estimate is an upper bound, so the bound is strict.

Settled charges are made durable by the usage journal and written to the database in
batches; `applied()` then moves them from `pending` into `stored`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from relay.errors import RelayError


@dataclass
class Balance:
    stored: int
    pending: int = 0
    reserved: int = 0
    outstanding: int = 0
    in_flight: int = 0

    @property
    def available(self) -> int:
        return self.stored - self.pending - self.reserved

    def admits_beside_others(self, estimate: int) -> bool:
        """Alone, a request needs only its reservation; beside others, the balance must
        cover all of them at their estimated costs."""
        return self.in_flight == 0 or self.stored - self.pending - self.outstanding >= estimate

    def take(self, amount: int, estimate: int) -> None:
        self.reserved += amount
        self.outstanding += estimate
        self.in_flight += 1

    def give_back(self, reservation: Reservation, charged: int) -> None:
        self.reserved -= reservation.amount
        self.outstanding -= reservation.estimate
        self.in_flight -= 1
        self.pending += charged


@dataclass(frozen=True)
class Reservation:
    user_id: int
    key_id: int | None  # None for unlimited keys: only the user's balance is involved
    amount: int
    estimate: int = 0  # what the request is expected to cost in the end (>= amount)


class MustWait(Exception):
    """The request would run beside others that the balance cannot all cover: retry later."""


def insufficient_user_quota() -> RelayError:
    return RelayError(403, "user quota is not enough", code="insufficient_user_quota")


def insufficient_key_quota() -> RelayError:
    return RelayError(403, "令牌额度不足", code="pre_consume_token_quota_failed")


USER, KEY = "u", "k"  # the two kinds of balance, as `refresh` names them


class Ledger:
    """One process's ledger. `billing.shared_ledger.SharedLedger` extends it across nodes;
    the hooks below that only matter there are no-ops here."""

    def __init__(self) -> None:
        self._users: dict[int, Balance] = {}
        self._keys: dict[int, Balance] = {}
        self._lock = threading.RLock()  # re-entered by SharedLedger, which extends these methods

    # --- loading -----------------------------------------------------------------------
    def has_user(self, user_id: int) -> bool:
        return user_id in self._users

    def has_key(self, key_id: int) -> bool:
        return key_id in self._keys

    def user_ids(self) -> list[int]:
        with self._lock:
            return list(self._users)

    def key_ids(self) -> list[int]:
        with self._lock:
            return list(self._keys)

    def load_user(self, user_id: int, stored: int) -> None:
        """Set the database value; `pending` must not hold charges already in `stored`."""
        with self._lock:
            balance = self._users.setdefault(user_id, Balance(stored))
            balance.stored = stored

    def load_key(self, key_id: int, stored: int) -> None:
        with self._lock:
            balance = self._keys.setdefault(key_id, Balance(stored))
            balance.stored = stored

    def user_available(self, user_id: int) -> int:
        return self._users[user_id].available

    def key_available(self, key_id: int) -> int:
        return self._keys[key_id].available

    # --- the request path ----------------------------------------------------------------
    def reserve(
        self, user_id: int, key_id: int | None, amount: int, estimate: int | None = None
    ) -> Reservation:
        """Take `amount` from both balances, or raise One API's 403 without taking anything,
        or `MustWait` when the concurrency gate is closed.

        A request needs a positive balance even when its reservation is zero (a free model),
        as One API refuses a user whose quota is used up.
        """
        amount = max(amount, 0)
        estimate = max(estimate if estimate is not None else amount, amount)
        with self._lock:
            user = self._users[user_id]
            if user.available - amount < 0 or user.available <= 0:
                raise insufficient_user_quota()
            key = self._keys[key_id] if key_id is not None else None
            if key is not None and (key.available - amount < 0 or key.available <= 0):
                raise insufficient_key_quota()
            if not user.admits_beside_others(estimate) or (
                key is not None and not key.admits_beside_others(estimate)
            ):
                raise MustWait
            user.take(amount, estimate)
            if key is not None:
                key.take(amount, estimate)
        return Reservation(user_id, key_id, amount, estimate)

    def settle(self, reservation: Reservation, charged: int) -> None:
        """Replace the reservation by the final charge (journal it durably first)."""
        with self._lock:
            self._users[reservation.user_id].give_back(reservation, charged)
            if reservation.key_id is not None:
                self._keys[reservation.key_id].give_back(reservation, charged)

    def release(self, reservation: Reservation) -> None:
        """The request failed: give the whole reservation back."""
        self.settle(reservation, 0)

    # --- write-back ------------------------------------------------------------------------
    def applying(self, user_charges: Mapping[int, int], key_charges: Mapping[int, int]) -> None:
        """These charges are about to be committed to the database."""

    def applied(
        self,
        user_charges: Mapping[int, int],
        key_charges: Mapping[int, int],
        writer: str | None = None,
    ) -> None:
        """Charges now in the database: move them from `pending` into `stored`. Charges of
        another writer (a dead process's journal, recovered) were never in our `pending`:
        they only lower `stored`."""
        with self._lock:
            for table, charges in ((self._users, user_charges), (self._keys, key_charges)):
                for balance_id, charged in charges.items():
                    balance = table.get(balance_id)
                    if balance is not None:
                        balance.stored -= charged
                        if writer is None:
                            balance.pending -= charged

    def aborted(self, user_charges: Mapping[int, int], key_charges: Mapping[int, int]) -> None:
        """The commit announced by `applying` failed."""

    def forget_writer(self, writer: str, users: Iterable[int], keys: Iterable[int]) -> None:
        """A dead writer's journal is fully applied."""

    def refresh(
        self, kind: str, ids: Iterable[int], read: Callable[[list[int]], Mapping[int, int]]
    ) -> set[int]:
        """Reload balances from the database (`read` returns id -> value). Call it when no
        write-back of ours is half done. Returns the ids to retry later (none here)."""
        wanted = list(ids)
        if wanted:
            values = read(wanted)
            load = self.load_user if kind == USER else self.load_key
            for balance_id in wanted:
                load(balance_id, values.get(balance_id, 0))
        return set()

    def credit_user(self, user_id: int, amount: int) -> None:
        """A top-up (or any change) committed to the database by someone else."""
        with self._lock:
            if user_id in self._users:
                self._users[user_id].stored += amount

    # --- upkeep (shared ledgers only) ------------------------------------------------------
    def heartbeat_and_reassert(self) -> bool:
        return True

    def missing_balances(self) -> tuple[list[int], list[int]]:
        return [], []

    def stop(self) -> None:
        pass


class BalancesMissing(Exception):
    """Redis holds no copy of these balances: load them from the database, then retry."""

    def __init__(self, users: list[int] | None = None, keys: list[int] | None = None) -> None:
        super().__init__(f"users {users or []}, keys {keys or []}")
        self.users = users or []
        self.keys = keys or []


def ledger_for(node: str) -> Ledger:
    """The ledger a process uses: shared through Redis when `REDIS_CONN_STRING` is set."""
    from django.conf import settings

    if not settings.REDIS_CONN_STRING:
        return Ledger()
    # Imported here: a node without Redis never loads the client (~7 MB per process).
    import redis

    from billing.shared_ledger import SharedLedger

    # Reserve and settle call Redis from the event loop (one round trip each, well under a
    # millisecond): a short timeout bounds how long a stalled Redis can hold the loop before
    # the node falls back to deciding alone.
    client = redis.Redis.from_url(
        settings.REDIS_CONN_STRING, socket_timeout=0.25, socket_connect_timeout=0.25
    )
    return SharedLedger(client, settings.CACHE_KEY_PREFIX, node)
