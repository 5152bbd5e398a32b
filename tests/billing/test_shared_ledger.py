"""The shared ledger against a real Redis: several `SharedLedger`s stand for several nodes."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import pytest
import redis

from billing.ledger import KEY, USER, BalancesMissing, MustWait
from billing.shared_ledger import SharedLedger
from relay.errors import RelayError


class FakeTables:
    """The database columns `refresh` reads, with a hook to run something mid-read."""

    def __init__(self, users: dict[int, int], keys: dict[int, int]) -> None:
        self.users = users
        self.keys = keys
        self.during_read: list = []

    def read_users(self, ids: list[int]) -> dict[int, int]:
        values = {i: self.users[i] for i in ids}
        while self.during_read:
            self.during_read.pop(0)()
        return values

    def read_keys(self, ids: list[int]) -> dict[int, int]:
        return {i: self.keys[i] for i in ids}


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    name = f"test-shared-ledger-{secrets.token_hex(4)}"
    yield name
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)


def node(client: redis.Redis, prefix: str, name: str, db: FakeTables) -> SharedLedger:
    ledger = SharedLedger(client, prefix, name)
    ledger.heartbeat_and_reassert()
    ledger.refresh(USER, [1], db.read_users)
    ledger.refresh(KEY, [7], db.read_keys)
    return ledger


def apply(ledger: SharedLedger, db: FakeTables, charges: dict[int, int]) -> None:
    """What the write-back does: mark, commit to the database, then move pending to stored."""
    ledger.applying(charges, {7: sum(charges.values())})
    for user_id, charged in charges.items():
        db.users[user_id] -= charged
    db.keys[7] -= sum(charges.values())
    ledger.applied(charges, {7: sum(charges.values())})


def available(client: redis.Redis, prefix: str, kind: str, balance_id: int) -> int:
    fields = {
        k.decode(): int(v)
        for k, v in client.hgetall(f"{prefix}:ledger:{kind}:{balance_id}").items()
    }
    pending = sum(v for k, v in fields.items() if k.startswith("p:"))
    reserved = sum(v for k, v in fields.items() if k.startswith("r:"))
    return fields["stored"] - pending - reserved


def test_the_gate_sees_requests_in_flight_on_another_node(client, prefix) -> None:
    db = FakeTables({1: 1000}, {7: 1000})
    a, b = node(client, prefix, "a", db), node(client, prefix, "b", db)

    first = a.reserve(1, 7, 100, estimate=600)
    # Alone on node b, this would pass; beside a's request the balance cannot cover both.
    with pytest.raises(MustWait):
        b.reserve(1, 7, 100, estimate=600)

    a.settle(first, 700)
    second = b.reserve(1, 7, 100, estimate=600)  # alone now: needs only its reservation
    assert available(client, prefix, USER, 1) == 1000 - 700 - 100
    b.settle(second, 250)
    assert available(client, prefix, KEY, 7) == 1000 - 700 - 250


def test_pending_charges_of_another_node_count_before_they_are_written(client, prefix) -> None:
    db = FakeTables({1: 1000}, {7: 300})
    a, b = node(client, prefix, "a", db), node(client, prefix, "b", db)
    a.settle(a.reserve(1, 7, 10), 290)  # journaled on a, not yet in the database

    with pytest.raises(RelayError) as caught:
        b.reserve(1, 7, 20)
    assert caught.value.code == "pre_consume_token_quota_failed"
    b.release(b.reserve(1, 7, 10))  # exactly what is left still fits


def test_applying_moves_pending_into_stored_without_changing_the_balance(client, prefix) -> None:
    db = FakeTables({1: 1000}, {7: 1000})
    a = node(client, prefix, "a", db)
    a.settle(a.reserve(1, 7, 10), 400)
    before = available(client, prefix, USER, 1)

    apply(a, db, {1: 400})

    assert available(client, prefix, USER, 1) == before == 600
    assert client.hget(f"{prefix}:ledger:u:1", "p:a") is None
    assert int(client.hget(f"{prefix}:ledger:u:1", "stored")) == db.users[1] == 600


def test_a_reload_that_meets_a_write_back_is_retried_not_double_counted(client, prefix) -> None:
    db = FakeTables({1: 1000}, {7: 1000})
    a, b = node(client, prefix, "a", db), node(client, prefix, "b", db)
    a.settle(a.reserve(1, 7, 10), 400)
    # b reloads; while it reads the database, a commits its charge and updates Redis.
    db.during_read.append(lambda: apply(a, db, {1: 400}))

    retry = b.refresh(USER, [1], db.read_users)

    assert retry == {1}
    assert available(client, prefix, USER, 1) == 600  # not 200: the charge counted once
    assert b.refresh(USER, [1], db.read_users) == set()
    assert available(client, prefix, USER, 1) == 600


def test_a_reload_during_a_commit_is_refused(client, prefix) -> None:
    db = FakeTables({1: 1000}, {7: 1000})
    a, b = node(client, prefix, "a", db), node(client, prefix, "b", db)
    a.settle(a.reserve(1, 7, 10), 400)
    a.applying({1: 400}, {})
    db.users[1] -= 400  # committed, Redis not updated yet

    assert b.refresh(USER, [1], db.read_users) == {1}
    a.applied({1: 400}, {})
    assert available(client, prefix, USER, 1) == 600


def test_requests_of_a_dead_node_stop_holding_the_gate(client, prefix) -> None:
    db = FakeTables({1: 1000}, {7: 1000})
    a, b = node(client, prefix, "a", db), node(client, prefix, "b", db)
    b.reserve(1, 7, 100, estimate=900)
    with pytest.raises(MustWait):
        a.reserve(1, 7, 100, estimate=900)

    client.delete(f"{prefix}:ledger:node:b")  # b died: its heartbeat expires

    a.reserve(1, 7, 100, estimate=900)
    assert client.hget(f"{prefix}:ledger:u:1", "n:b") is None


def test_a_redis_that_lost_everything_is_rebuilt_from_the_database_and_the_nodes(
    client, prefix
) -> None:
    db = FakeTables({1: 1000}, {7: 1000})
    a = node(client, prefix, "a", db)
    a.settle(a.reserve(1, 7, 10), 300)  # pending on a
    in_flight = a.reserve(1, 7, 50)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)

    with pytest.raises(BalancesMissing) as caught:
        a.reserve(1, 7, 10)
    assert caught.value.users == [1]
    assert a.heartbeat_and_reassert()
    assert a.missing_balances() == ([1], [7])
    a.refresh(USER, [1], db.read_users)
    a.refresh(KEY, [7], db.read_keys)

    assert available(client, prefix, USER, 1) == 1000 - 300 - 50
    a.settle(in_flight, 20)
    assert available(client, prefix, KEY, 7) == 1000 - 300 - 20


def test_a_dead_writers_charges_count_until_its_journal_is_recovered(client, prefix) -> None:
    db = FakeTables({1: 1000}, {7: 1000})
    dead = node(client, prefix, "dead", db)
    dead.settle(dead.reserve(1, 7, 10), 400)
    client.delete(f"{prefix}:ledger:node:dead")
    survivor = node(client, prefix, "b", db)
    assert available(client, prefix, USER, 1) == 600  # its charge still counts

    # The survivor applies the dead process's journal.
    survivor.applying({1: 400}, {7: 400})
    db.users[1] -= 400
    db.keys[7] -= 400
    survivor.applied({1: 400}, {7: 400}, writer="dead")
    survivor.forget_writer("dead", [1], [7])

    assert available(client, prefix, USER, 1) == 600
    assert int(client.hget(f"{prefix}:ledger:u:1", "stored")) == 600
    assert not any(k.startswith(b"p:") for k in client.hkeys(f"{prefix}:ledger:u:1"))
    assert survivor.user_available(1) == 600  # its own ledger never held those charges


def test_without_redis_each_node_decides_alone(prefix) -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    ledger = SharedLedger(unreachable, prefix, "a")
    ledger.load_user(1, 100)

    reservation = ledger.reserve(1, None, 30)
    ledger.settle(reservation, 40)

    assert ledger.user_available(1) == 60
    assert not ledger.heartbeat_and_reassert()


def test_concurrent_nodes_never_overdraw_by_more_than_one_settlement(client, prefix) -> None:
    """Four nodes, eight threads each, on a balance of 10,000: every request reserves 10,
    expects 100 and costs 100. The gate lets requests run together only while the balance
    covers them all, so the final balance is above -(100 - 10)."""
    db = FakeTables({1: 10_000}, {7: 10_000})
    nodes = [node(client, prefix, f"n{i}", db) for i in range(4)]
    served = []
    lock = threading.Lock()

    def worker(ledger: SharedLedger) -> None:
        while True:
            try:
                reservation = ledger.reserve(1, 7, 10, estimate=100)
            except MustWait:
                continue
            except RelayError:
                return
            ledger.settle(reservation, 100)
            with lock:
                served.append(1)

    threads = [threading.Thread(target=worker, args=(n,)) for n in nodes for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    final = available(client, prefix, KEY, 7)
    assert final == 10_000 - 100 * len(served)
    assert -90 <= final < 10
