"""Creating accounts the way One API's `User.Insert` does, for every way of signing up."""

from __future__ import annotations

import time
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.models import Role, User
from billing.keys import new_access_token, new_aff_code, new_api_key
from billing.logs import format_quota, record_log
from billing.models import ApiKey, LogType
from oneapi import caching, options

DEFAULT_KEY_NAME = "default"


def _unique_aff_code() -> str:
    for _ in range(20):
        code = new_aff_code()
        if not User.objects.filter(aff_code=code).exists():
            return code
    raise IntegrityError("could not find a free invitation code")


@transaction.atomic
def create_account(
    username: str,
    password: str | None,
    *,
    inviter_id: int = 0,
    role: int = Role.COMMON,
    **fields: Any,
) -> User:
    """A new user with `QuotaForNewUser`, invitation rewards, an access token, an invite
    code and an unlimited `default` key, each reward with its system log, in one transaction.
    `password=None` makes an account that can only log in through an external identity."""
    new_user_quota = options.get_int("QuotaForNewUser")
    user = User.objects.create_user(
        username,
        password,
        role=role,
        quota=new_user_quota,
        access_token=new_access_token(),
        aff_code=_unique_aff_code(),
        inviter_id=inviter_id,
        **fields,
    )
    if new_user_quota > 0:
        record_log(
            user.pk,
            LogType.SYSTEM,
            f"新用户注册赠送 {format_quota(new_user_quota)}",
            username=username,
        )
    if inviter_id and User.objects.filter(pk=inviter_id).exists():
        _reward_invitation(user, inviter_id)
    now = int(time.time())
    ApiKey.objects.create(
        user=user,
        key=new_api_key(),
        name=DEFAULT_KEY_NAME,
        created_time=now,
        accessed_time=now,
        expired_time=-1,
        remain_quota=-1,
        unlimited_quota=True,
    )
    return user


def _reward_invitation(user: User, inviter_id: int) -> None:
    invitee_reward = options.get_int("QuotaForInvitee")
    inviter_reward = options.get_int("QuotaForInviter")
    if invitee_reward > 0:
        User.objects.filter(pk=user.pk).update(quota=F("quota") + invitee_reward)
        user.quota += invitee_reward
        record_log(
            user.pk,
            LogType.SYSTEM,
            f"使用邀请码赠送 {format_quota(invitee_reward)}",
            username=user.username,
        )
    if inviter_reward > 0:
        User.objects.filter(pk=inviter_id).update(quota=F("quota") + inviter_reward)
        record_log(inviter_id, LogType.SYSTEM, f"邀请用户赠送 {format_quota(inviter_reward)}")
        caching.invalidate(caching.USER, inviter_id)
