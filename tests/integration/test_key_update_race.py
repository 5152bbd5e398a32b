"""Key edits racing the usage write-back, on the real database (run it on PostgreSQL too)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from django.db import connections

from billing.journal import Journal, UsageRecord, apply_journal
from billing.models import ApiKey, KeyStatus
from billing.services import update_token
from tests.factories import make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHARGES = 200
CHARGE = 7


def test_status_edits_never_lose_charges_applied_meanwhile(tmp_path: Path) -> None:
    user = make_user(quota=10_000_000)
    key = ApiKey.objects.create(user=user, key="r" * 48, name="raced", remain_quota=100_000)
    journal = Journal(tmp_path)
    errors: list[BaseException] = []

    def charge() -> None:
        try:
            for index in range(CHARGES):
                journal.append(UsageRecord(f"race-{index}", user.pk, key.pk, True, 0, CHARGE, None))
                if index % 10 == 9:
                    apply_journal(journal.path)
            apply_journal(journal.path)
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            connections.close_all()

    def toggle(status: int) -> None:
        try:
            for _ in range(25):
                update_token(user.pk, {"id": key.pk, "status": status}, status_only=True)
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=charge)]
    threads += [
        threading.Thread(target=toggle, args=(status,))
        for status in (KeyStatus.ENABLED, KeyStatus.DISABLED, KeyStatus.ENABLED)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.close()

    assert errors == []
    key.refresh_from_db()
    user.refresh_from_db()
    assert key.used_quota == CHARGES * CHARGE
    assert key.remain_quota == 100_000 - CHARGES * CHARGE
    assert key.request_count == CHARGES
    assert user.quota == 10_000_000 - CHARGES * CHARGE
    assert key.status in (KeyStatus.ENABLED, KeyStatus.DISABLED)


def test_concurrent_full_edits_of_one_key_all_succeed(tmp_path: Path) -> None:
    user = make_user()
    key = ApiKey.objects.create(user=user, key="s" * 48, name="start", remain_quota=500)
    errors: list[BaseException] = []

    def edit(index: int) -> None:
        try:
            update_token(
                user.pk,
                {
                    "id": key.pk,
                    "name": f"name-{index}",
                    "expired_time": -1,
                    "remain_quota": 500 + index,
                    "unlimited_quota": False,
                    "models": "",
                    "subnet": "",
                },
                status_only=False,
            )
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=edit, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    key.refresh_from_db()
    index = int(key.name.removeprefix("name-"))
    assert key.remain_quota == 500 + index  # one edit won whole: no torn mix of two
