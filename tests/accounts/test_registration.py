from __future__ import annotations

import pytest

from accounts.registration import create_account
from billing.models import ApiKey, Log, LogType
from oneapi.options import set_option
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_new_account_gets_token_codes_and_a_default_key() -> None:
    user = create_account("newbie", "password123", email="n@example.com")

    assert user.check_password("password123")
    assert len(user.access_token) == 32
    assert len(user.aff_code) == 4
    key = ApiKey.objects.get(user=user)
    assert key.name == "default"
    assert key.unlimited_quota and key.expired_time == -1
    assert len(key.key) == 48 and key.key.isalnum()
    assert user.quota == 0
    assert not Log.objects.exists()


def test_new_user_quota_and_invitation_rewards_are_paid_and_logged() -> None:
    set_option("QuotaForNewUser", "1000")
    set_option("QuotaForInvitee", "200")
    set_option("QuotaForInviter", "300")
    set_option("DisplayInCurrencyEnabled", "false")
    inviter = make_user(quota=5)

    user = create_account("invited", "password123", inviter_id=inviter.pk)

    user.refresh_from_db()
    inviter.refresh_from_db()
    assert user.quota == 1200
    assert user.inviter_id == inviter.pk
    assert inviter.quota == 305
    contents = sorted(Log.objects.filter(type=LogType.SYSTEM).values_list("content", flat=True))
    assert contents == [
        "使用邀请码赠送 200 点额度",
        "新用户注册赠送 1000 点额度",
        "邀请用户赠送 300 点额度",
    ]


def test_unknown_inviter_pays_nothing() -> None:
    set_option("QuotaForInvitee", "200")
    user = create_account("lonely", "password123", inviter_id=999_999)
    user.refresh_from_db()
    assert user.quota == 0
