"""Writing management logs (top-ups, system, manage) and One API's quota wording."""

from __future__ import annotations

import time

from billing.models import Log, LogType
from oneapi import options


def format_quota(quota: int) -> str:
    """One API's `LogQuota`: `＄0.002000 额度` in currency mode, else `1000 点额度`."""
    if options.get_bool("DisplayInCurrencyEnabled"):
        per_unit = options.get_float("QuotaPerUnit") or 500000
        return f"＄{quota / per_unit:.6f} 额度"
    return f"{quota} 点额度"


def record_log(user_id: int, log_type: LogType, content: str, *, username: str = "") -> Log:
    if not username:
        from accounts.models import User

        username = User.objects.filter(pk=user_id).values_list("username", flat=True).first() or ""
    return Log.objects.create(
        user_id=user_id,
        username=username,
        created_at=int(time.time()),
        type=int(log_type),
        content=content,
    )
