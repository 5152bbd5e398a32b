"""Low-quota reminders: one mail per crossing, re-armed when the quota climbs back."""

from __future__ import annotations

import fcntl
import json
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache

from accounts import email as accounts_email
from accounts.models import User, UserStatus
from billing import quota_alerts
from billing.periodic_tasks import send_quota_alerts_task
from oneapi.options import set_option
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_state(settings: Any, tmp_path: Path) -> None:
    """A state file of this test's own (the default: no Redis)."""
    settings.DATA_DIR = tmp_path
    settings.REDIS_ENABLED = False


@pytest.fixture(autouse=True)
def smtp() -> None:
    set_option("SMTPServer", "smtp.example.com")
    set_option("SMTPFrom", "gateway@example.com")
    set_option("ServerAddress", "https://gw.example.com/")
    set_option("QuotaRemindThreshold", "1000")


def spender(quota: int, **fields: Any) -> User:
    fields.setdefault("email", "alice@example.com")
    return make_user(quota=quota, used_quota=5000, **fields)


def set_quota(user: User, quota: int) -> None:
    User.objects.filter(pk=user.pk).update(quota=quota)


def scan() -> list[str]:
    """Run one scan; the subjects mailed by it."""
    before = len(mail.outbox)
    quota_alerts.send_quota_alerts()
    return [message.subject for message in mail.outbox[before:]]


def test_crossing_the_threshold_mails_once() -> None:
    spender(600)

    assert scan() == ["您的额度即将用尽"]
    assert scan() == []

    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    assert message.from_email == "gateway@example.com"
    assert "剩余额度为 600" in message.body
    assert "https://gw.example.com/topup" in message.body
    html, _ = message.alternatives[0]
    assert "<a href='https://gw.example.com/topup'>https://gw.example.com/topup</a>" in html


def test_running_out_mails_again_then_never() -> None:
    user = spender(600)
    scan()

    set_quota(user, 0)
    assert scan() == ["您的额度已用尽"]
    assert "剩余额度为 0，" in mail.outbox[-1].body
    set_quota(user, -20)
    assert scan() == []


def test_empty_at_first_sight_gets_the_empty_mail_only() -> None:
    spender(0)

    assert scan() == ["您的额度已用尽"]
    assert scan() == []


def test_climbing_back_above_re_arms() -> None:
    user = spender(600)
    scan()

    set_quota(user, 5000)
    assert scan() == []
    set_quota(user, 999)
    assert scan() == ["您的额度即将用尽"]


def test_climbing_from_empty_to_low_re_arms_the_empty_mail_only() -> None:
    user = spender(0)
    scan()

    set_quota(user, 500)  # a small top-up, still low
    assert scan() == []
    set_quota(user, 0)
    assert scan() == ["您的额度已用尽"]


def test_quota_at_the_threshold_is_not_low() -> None:
    spender(1000)
    assert scan() == []


@pytest.mark.parametrize(
    "fields",
    [
        {"used_quota": 0, "quota": 0},  # a new account that never had quota
        {"email": ""},
        {"status": UserStatus.DISABLED},
    ],
)
def test_users_who_cannot_or_need_not_be_mailed(fields: dict[str, Any]) -> None:
    defaults = {"quota": 10, "used_quota": 5000, "email": "bob@example.com"}
    make_user(**{**defaults, **fields})

    assert scan() == []


def test_a_failed_send_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    spender(10)
    real_send = accounts_email.send

    def broken(message: Any) -> None:
        raise accounts_email.SendFailed("down")

    monkeypatch.setattr(accounts_email, "send", broken)
    summary = quota_alerts.send_quota_alerts()
    assert (summary.sent, summary.failed) == (0, 1)

    monkeypatch.setattr(accounts_email, "send", real_send)
    assert scan() == ["您的额度即将用尽"]


def test_without_smtp_nobody_is_marked() -> None:
    spender(10)
    set_option("SMTPServer", "")
    assert scan() == []

    set_option("SMTPServer", "smtp.example.com")
    assert scan() == ["您的额度即将用尽"]


def test_each_user_is_judged_alone(tmp_path: Path) -> None:
    low = spender(10, email="low@example.com")
    spender(5000, email="rich@example.com")
    empty = spender(0, email="empty@example.com")

    scan()

    assert sorted(message.to[0] for message in mail.outbox) == [
        "empty@example.com",
        "low@example.com",
    ]
    assert quota_alerts.send_quota_alerts() == quota_alerts.ScanSummary()
    set_quota(low, 5000)
    assert quota_alerts.send_quota_alerts().rearmed == 1
    state = json.loads((tmp_path / "state" / "quota-alerts.json").read_text())
    assert state == {str(empty.pk): quota_alerts.EMPTY}


def test_a_deleted_user_is_forgotten() -> None:
    user = spender(10)
    scan()
    user.delete()

    assert quota_alerts.send_quota_alerts().rearmed == 1


def test_state_survives_in_the_file_across_processes(tmp_path: Path) -> None:
    spender(10)
    scan()

    state = json.loads((tmp_path / "state" / "quota-alerts.json").read_text())
    assert list(state.values()) == [quota_alerts.LOW]


def test_a_scan_in_progress_elsewhere_is_not_repeated(tmp_path: Path) -> None:
    spender(10)
    (tmp_path / "state").mkdir()
    with (tmp_path / "state" / "quota-alerts.lock").open("ab") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(quota_alerts.ScanAlreadyRunning):
            quota_alerts.send_quota_alerts()
        assert send_quota_alerts_task() == {"skipped": "already running"}
    assert mail.outbox == []


def test_with_redis_the_state_and_lock_live_in_the_shared_cache(settings: Any) -> None:
    settings.REDIS_ENABLED = True
    cache.delete(quota_alerts.STATE_KEY)
    user = spender(10)

    assert scan() == ["您的额度即将用尽"]
    assert cache.get(quota_alerts.STATE_KEY) == {str(user.pk): quota_alerts.LOW}
    assert scan() == []

    cache.add(quota_alerts.LOCK_KEY, "another node", timeout=60)
    try:
        with pytest.raises(quota_alerts.ScanAlreadyRunning):
            quota_alerts.send_quota_alerts()
    finally:
        cache.delete(quota_alerts.LOCK_KEY)
        cache.delete(quota_alerts.STATE_KEY)


def test_the_task_reports_what_it_did() -> None:
    spender(10)
    assert send_quota_alerts_task() == {"sent": 1, "failed": 0, "rearmed": 0}
