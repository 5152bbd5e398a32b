from __future__ import annotations

from pathlib import Path

import pytest

from accounts.models import User
from billing.journal import UsageRecord
from billing.models import ApiKey
from oneapi.models import CacheEvent
from relay.runtime import Runtime
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_applied_charges_make_other_processes_reload_those_balances(tmp_path: Path) -> None:
    user = make_user(quota=10_000)
    key = ApiKey.objects.create(user=user, key="n" * 48, name="k", remain_quota=5_000)
    here = Runtime(tmp_path / "a", interval=3600)
    there = Runtime(tmp_path / "b", interval=3600)
    for runtime in (here, there):
        runtime.load_balances(user.pk, key.key, key.pk)
    try:
        reservation = here.ledger.reserve(user.pk, key.pk, 100)
        here.settle(reservation, UsageRecord("r-1", user.pk, key.pk, True, 0, 700, None))
        here.flush()

        event = CacheEvent.objects.filter(kind="balances").latest("id")
        assert event.ident == f"{here.writer_id}|{user.pk}|{key.pk}"
        here.balances_changed_elsewhere(event.ident)  # its own: nothing to reload
        there.balances_changed_elsewhere(event.ident)
        here.flush()
        there.flush()

        assert User.objects.get(pk=user.pk).quota == 9_300
        assert there.ledger.user_available(user.pk) == 9_300
        assert there.ledger.key_available(key.pk) == 4_300
        assert here.ledger.user_available(user.pk) == 9_300
    finally:
        here.journal.close()
        there.journal.close()
