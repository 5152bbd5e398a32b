from __future__ import annotations

import random
import threading

import pytest

from billing.ledger import Ledger
from relay.errors import RelayError


def ledger_with(user_quota: int, key_quota: int | None) -> Ledger:
    ledger = Ledger()
    ledger.load_user(1, user_quota)
    if key_quota is not None:
        ledger.load_key(7, key_quota)
    return ledger


def test_reserve_settle_moves_the_reservation_to_the_charge() -> None:
    ledger = ledger_with(1000, 300)

    reservation = ledger.reserve(1, 7, 200)
    assert (ledger.user_available(1), ledger.key_available(7)) == (800, 100)
    ledger.settle(reservation, 150)

    assert (ledger.user_available(1), ledger.key_available(7)) == (850, 150)


def test_release_gives_everything_back() -> None:
    ledger = ledger_with(1000, 300)

    ledger.release(ledger.reserve(1, 7, 200))

    assert (ledger.user_available(1), ledger.key_available(7)) == (1000, 300)


def test_key_limit_is_always_checked_even_for_a_rich_user() -> None:
    # One API skips the key check when the user has 100x the reservation; we never do.
    ledger = ledger_with(10**12, 50)

    with pytest.raises(RelayError) as error:
        ledger.reserve(1, 7, 51)

    assert (error.value.status, error.value.code) == (403, "pre_consume_token_quota_failed")
    assert (ledger.user_available(1), ledger.key_available(7)) == (10**12, 50)


def test_user_limit_applies_to_unlimited_keys() -> None:
    ledger = ledger_with(100, None)

    with pytest.raises(RelayError) as error:
        ledger.reserve(1, None, 101)

    assert (error.value.message, error.value.code) == (
        "user quota is not enough",
        "insufficient_user_quota",
    )
    assert ledger.user_available(1) == 100


def test_an_exhausted_user_is_refused_even_for_a_free_request() -> None:
    ledger = ledger_with(0, None)

    with pytest.raises(RelayError):
        ledger.reserve(1, None, 0)


def test_applied_charges_move_from_pending_to_stored() -> None:
    ledger = ledger_with(1000, 300)
    ledger.settle(ledger.reserve(1, 7, 100), 80)

    ledger.applied({1: 80}, {7: 80})
    ledger.load_user(1, 920)  # what the database now says

    assert (ledger.user_available(1), ledger.key_available(7)) == (920, 220)


def test_credit_user_adds_a_committed_top_up() -> None:
    ledger = ledger_with(10, None)

    ledger.credit_user(1, 500)

    assert ledger.user_available(1) == 510


def test_concurrent_requests_never_overdraw_by_more_than_one_delta() -> None:
    # given: 200 threads racing for a key that covers only a few requests
    ledger = ledger_with(10**9, 10_000)
    charges: list[int] = []
    refusals: list[int] = []
    record = threading.Lock()
    start = threading.Barrier(200)
    max_delta = 300

    def request(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        try:
            reservation = ledger.reserve(1, 7, 1000)
        except RelayError:
            with record:
                refusals.append(seed)
            return
        charged = 1000 + rng.randint(-max_delta, max_delta)
        ledger.settle(reservation, charged)
        with record:
            charges.append(charged)

    # when
    threads = [threading.Thread(target=request, args=(seed,)) for seed in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # then: every request either charged or was refused, and the books balance exactly
    assert len(charges) + len(refusals) == 200
    assert ledger.key_available(7) == 10_000 - sum(charges)
    assert ledger.user_available(1) == 10**9 - sum(charges)
    assert ledger.key_available(7) >= -max_delta
    assert charges, "some requests must have been served"


def test_gate_lets_a_request_beside_others_only_when_all_estimates_are_covered() -> None:
    from billing.ledger import MustWait

    ledger = ledger_with(1000, None)
    first = ledger.reserve(1, None, 100, estimate=800)

    with pytest.raises(MustWait):
        ledger.reserve(1, None, 100, estimate=800)
    # A cheaper request still fits beside the first.
    ledger.release(ledger.reserve(1, None, 100, estimate=200))

    ledger.settle(first, 750)
    alone = ledger.reserve(1, None, 100, estimate=800)  # alone: only the reservation counts
    assert ledger.user_available(1) == 150
    ledger.settle(alone, 240)
    assert ledger.user_available(1) == 10


def test_concurrent_requests_overdraw_by_at_most_one_settlement_delta() -> None:
    """200 threads whose requests reserve 127 but cost 753, against a balance for 50."""
    from billing.ledger import MustWait

    cost, reservation_amount = 753, 127
    ledger = ledger_with(10**9, 50 * cost)
    served = []

    def client() -> None:
        while True:
            try:
                reservation = ledger.reserve(1, 7, reservation_amount, estimate=cost)
            except MustWait:
                continue
            except RelayError:
                return
            served.append(1)
            ledger.settle(reservation, cost)

    threads = [threading.Thread(target=client) for _ in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert ledger.key_available(7) >= -(cost - reservation_amount)
    assert ledger.key_available(7) == 50 * cost - len(served) * cost
    assert len(served) in (50, 51)
