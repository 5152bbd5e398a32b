from __future__ import annotations

import time
from pathlib import Path

import pytest

from accounts.models import User
from billing.journal import Journal, UsageRecord, apply_journal
from billing.ledger import Ledger
from billing.models import ApiKey
from billing.writeback import WriteBack
from tests.factories import make_channel, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world(tmp_path: Path):
    """A user with 1000 quota, a key limited to 500, a channel, a loaded ledger, a journal."""
    user = make_user(quota=1_000)
    key = ApiKey.objects.create(user=user, key="w" * 48, name="k", remain_quota=500)
    channel = make_channel()
    ledger = Ledger()
    ledger.load_user(user.pk, 1_000)
    ledger.load_key(key.pk, 500)
    journal = Journal(tmp_path)
    yield user, key, channel, ledger, journal
    journal.close()


def charge(ledger: Ledger, journal: Journal, user, key, channel, request_id: str, quota: int):
    reservation = ledger.reserve(user.pk, key.pk, 100)
    journal.append(UsageRecord(request_id, user.pk, key.pk, True, channel.pk, quota, None))
    ledger.settle(reservation, quota)


def test_flush_writes_charges_and_keeps_available_balances(world) -> None:
    # given
    user, key, channel, ledger, journal = world
    writeback = WriteBack(journal, ledger, interval=3600)
    charge(ledger, journal, user, key, channel, "a", 70)
    charge(ledger, journal, user, key, channel, "b", 30)

    # when
    flushed = writeback.flush_once()

    # then: the database caught up and the ledger's view did not move
    assert flushed == 2
    assert User.objects.get(pk=user.pk).quota == 900
    assert ApiKey.objects.get(pk=key.pk).remain_quota == 400
    assert (ledger.user_available(user.pk), ledger.key_available(key.pk)) == (900, 400)
    assert writeback.flush_once() == 0


def test_the_thread_flushes_on_its_interval_and_on_stop(world) -> None:
    user, key, channel, ledger, journal = world
    writeback = WriteBack(journal, ledger, interval=0.05)
    writeback.start()

    charge(ledger, journal, user, key, channel, "a", 10)
    deadline = time.monotonic() + 5
    while User.objects.get(pk=user.pk).quota != 990 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert User.objects.get(pk=user.pk).quota == 990

    charge(ledger, journal, user, key, channel, "b", 5)
    writeback.stop()

    assert User.objects.get(pk=user.pk).quota == 985
    assert not writeback.is_alive()


def test_a_commit_the_write_back_never_heard_of_is_reported_at_the_next_flush(world) -> None:
    """A flush whose COMMIT reached the database but whose answer was lost raises, yet the
    batch is applied. The next flush must move those charges out of the ledger's pending,
    else they count twice once the balances are reloaded: in the database and as pending."""
    # given: one batch written behind the write-back's back, as such a commit leaves it
    user, key, channel, ledger, journal = world
    writeback = WriteBack(journal, ledger, interval=3600)
    charge(ledger, journal, user, key, channel, "a", 70)
    apply_journal(journal.path)
    charge(ledger, journal, user, key, channel, "b", 30)

    # when: the next flush, then a reload of the balances (as any invalidation does)
    flushed = writeback.flush_once()
    ledger.load_user(user.pk, User.objects.get(pk=user.pk).quota)
    ledger.load_key(key.pk, ApiKey.objects.get(pk=key.pk).remain_quota)

    # then: "a" reported, "b" applied, each counted once, nothing written twice
    assert flushed == 2
    assert User.objects.get(pk=user.pk).quota == 900
    assert ApiKey.objects.get(pk=key.pk).remain_quota == 400
    assert (ledger.user_available(user.pk), ledger.key_available(key.pk)) == (900, 400)
    assert writeback.flush_once() == 0
