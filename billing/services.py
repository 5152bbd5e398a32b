"""What the billing `/api` routes do: API keys, logs, redemption codes and top-ups.

The views only parse and answer; everything here can be called directly. Every write to a key
or a user invalidates its cache entry inside the writing transaction (see oneapi.caching), and
quota changes are single `UPDATE ... SET quota = quota + n` statements.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Case, CharField, Count, F, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce

from accounts.models import User
from billing.keys import new_api_key, new_redemption_code
from billing.logs import format_quota
from billing.models import ApiKey, KeyStatus, Log, LogType, Redemption, RedemptionStatus
from oneapi import caching
from oneapi.api import ApiError

MAX_RECENT_ITEMS = 100  # One API's config.MaxRecentItems: the cap on log searches
DASHBOARD_DAYS = 7

TOKEN_NOT_FOUND = "令牌不存在"
TOKEN_EXPIRED = "令牌已过期，无法启用，请先修改令牌过期时间，或者设置为永不过期"
TOKEN_EXHAUSTED = "令牌可用额度已用尽，无法启用，请先修改令牌剩余额度，或者设置为无限额度"
REDEMPTION_NOT_FOUND = "兑换码不存在"
REDEMPTION_USED = "该兑换码已被使用，无法修改状态"
NO_REDEMPTION_KEY = "未提供兑换码"
INVALID_REDEMPTION_KEY = "兑换失败，无效的兑换码"  # One API prefixes "兑换失败，"
USED_REDEMPTION_KEY = "兑换失败，该兑换码已被使用"
USER_NOT_FOUND = "用户不存在"
TARGET_TIMESTAMP_REQUIRED = "target timestamp is required"

# The fields a full `PUT /api/token/` replaces (One API's `Token.Update` minus status).
TOKEN_EDITABLE = (
    "name",
    "expired_time",
    "remain_quota",
    "unlimited_quota",
    "models",
    "subnet",
    "rpm_limit",
    "tpm_limit",
    "concurrency_limit",
)
TOKEN_ORDERS: dict[str, tuple[str, ...]] = {
    "remain_quota": ("-unlimited_quota", "-remain_quota", "-id"),
    "used_quota": ("-used_quota", "-id"),
}
CSV_COLUMNS = ("id", "name", "key", "quota", "status", "created_time")


def now() -> int:
    return int(time.time())


# --- API keys ("tokens") ------------------------------------------------------------------


def token_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.pk,
        "user_id": key.user_id,
        "key": key.key,
        "status": key.status,
        "name": key.name,
        "created_time": key.created_time,
        "accessed_time": key.accessed_time,
        "expired_time": key.expired_time,
        "remain_quota": key.remain_quota,
        "unlimited_quota": key.unlimited_quota,
        "used_quota": key.used_quota,
        "models": key.models,
        "subnet": key.subnet,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "concurrency_limit": key.concurrency_limit,
    }


def list_tokens(user_id: int, offset: int, limit: int, order: str = "") -> list[ApiKey]:
    ordering = TOKEN_ORDERS.get(order, ("-id",))
    return list(ApiKey.objects.filter(user_id=user_id).order_by(*ordering)[offset : offset + limit])


def search_tokens(user_id: int, keyword: str) -> list[ApiKey]:
    return list(ApiKey.objects.filter(user_id=user_id, name__startswith=keyword).order_by("-id"))


def get_token(user_id: int, token_id: int) -> ApiKey:
    """The caller's key; another user's id answers exactly like a missing one."""
    key = ApiKey.objects.filter(pk=token_id, user_id=user_id).first()
    if key is None:
        raise ApiError(TOKEN_NOT_FOUND)
    return key


def create_token(user_id: int, fields: Mapping[str, Any]) -> ApiKey:
    created = now()
    with transaction.atomic():
        key = ApiKey.objects.create(
            user_id=user_id,
            key=new_api_key(),
            created_time=created,
            accessed_time=created,
            **{name: fields[name] for name in TOKEN_EDITABLE},
        )
        # The relay also remembers unknown keys; never let it remember this one as unknown.
        caching.invalidate(caching.KEY, key.key)
    return key


def refuse_enabling(key: ApiKey, at: int) -> None:
    """One API refuses only when the stored status already says expired/exhausted; nothing
    here writes those statuses, so the key's own expiry and quota are checked instead."""
    if key.expired_time != -1 and key.expired_time <= at:
        raise ApiError(TOKEN_EXPIRED)
    if not key.unlimited_quota and key.remain_quota <= 0:
        raise ApiError(TOKEN_EXHAUSTED)


def update_token(user_id: int, fields: Mapping[str, Any], *, status_only: bool) -> ApiKey:
    """`status_only` changes just the status; otherwise the editable fields are replaced and
    the status is kept, as One API does."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().filter(pk=fields["id"], user_id=user_id).first()
        if key is None:
            raise ApiError(TOKEN_NOT_FOUND)
        if status_only:
            if fields["status"] == KeyStatus.ENABLED:
                refuse_enabling(key, now())
            changes = {"status": fields["status"]}
        else:
            # A field the update left out (the rate limits may be) keeps its value.
            changes = {name: fields[name] for name in TOKEN_EDITABLE if name in fields}
        # Only these columns: used_quota and remain_quota are also written by the relay's
        # usage write-back, which must not be overwritten with what this request read.
        ApiKey.objects.filter(pk=key.pk).update(**changes)
        caching.invalidate(caching.KEY, key.key)
        key.refresh_from_db()
    return key


def delete_token(user_id: int, token_id: int) -> None:
    with transaction.atomic():
        key = get_token(user_id, token_id)
        key.delete()
        caching.invalidate(caching.KEY, key.key)


# --- logs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogFilter:
    """One API's log query parameters; zero or empty means "any"."""

    type: int = 0
    start_timestamp: int = 0
    end_timestamp: int = 0
    model_name: str = ""
    token_name: str = ""
    username: str = ""
    channel: int = 0

    def apply(self, rows: QuerySet[Log], *, with_type: bool = True) -> QuerySet[Log]:
        if with_type and self.type:
            rows = rows.filter(type=self.type)
        if self.start_timestamp:
            rows = rows.filter(created_at__gte=self.start_timestamp)
        if self.end_timestamp:
            rows = rows.filter(created_at__lte=self.end_timestamp)
        if self.model_name:
            rows = rows.filter(model_name=self.model_name)
        if self.token_name:
            rows = rows.filter(token_name=self.token_name)
        if self.username:
            rows = rows.filter(username=self.username)
        if self.channel:
            rows = rows.filter(channel_id=self.channel)
        return rows


def log_json(log: Log, *, with_id: bool = True) -> dict[str, Any]:
    """One API's JSON: `channel` is channel_id; users' own logs come without their id."""
    data: dict[str, Any] = {"id": log.pk} if with_id else {}
    data.update(
        {
            "user_id": log.user_id,
            "created_at": log.created_at,
            "type": log.type,
            "content": log.content,
            "username": log.username,
            "token_name": log.token_name,
            "model_name": log.model_name,
            "quota": log.quota,
            "prompt_tokens": log.prompt_tokens,
            "completion_tokens": log.completion_tokens,
            "channel": log.channel_id,
            "request_id": log.request_id or "",
            "elapsed_time": log.elapsed_time,
            "is_stream": log.is_stream,
            "system_prompt_reset": log.system_prompt_reset,
        }
    )
    return data


def _logs(user_id: int | None) -> QuerySet[Log]:
    rows = Log.objects.all()
    return rows if user_id is None else rows.filter(user_id=user_id)


def list_logs(
    filters: LogFilter, offset: int, limit: int, *, user_id: int | None = None
) -> list[Log]:
    """Newest first; `user_id` limits the result to that user's logs."""
    rows = filters.apply(_logs(user_id)).order_by("-id")
    return list(rows[offset : offset + limit])


def search_all_logs(keyword: str) -> list[Log]:
    """Type equal to the keyword, or content starting with it (One API's admin search)."""
    match = Q(content__startswith=keyword)
    if _is_int(keyword):
        match |= Q(type=int(keyword))
    return list(Log.objects.filter(match).order_by("-id")[:MAX_RECENT_ITEMS])


def search_user_logs(user_id: int, keyword: str) -> list[Log]:
    """One API matches a user's search keyword against the log type only."""
    if not _is_int(keyword):
        return []
    rows = Log.objects.filter(user_id=user_id, type=int(keyword)).order_by("-id")
    return list(rows[:MAX_RECENT_ITEMS])


def sum_consumed_quota(filters: LogFilter, *, user_id: int | None = None) -> int:
    """Quota of consume logs; like One API the `type` parameter is ignored."""
    rows = filters.apply(_logs(user_id), with_type=False).filter(type=LogType.CONSUME)
    return int(rows.aggregate(total=Coalesce(Sum("quota"), 0))["total"])


def delete_logs_before(target_timestamp: int) -> int:
    if not target_timestamp:
        raise ApiError(TARGET_TIMESTAMP_REQUIRED)
    deleted, _ = Log.objects.filter(created_at__lt=target_timestamp).delete()
    return deleted


def dashboard(user_id: int, at: float | None = None) -> list[dict[str, Any]]:
    """The caller's consume logs of the last 7 days (today included) grouped by day and
    model. Days are calendar days in settings.TIME_ZONE (One API uses the database's zone
    for the label but UTC for the range); the grouping runs in the database."""
    zone = ZoneInfo(settings.TIME_ZONE)
    today = dt.datetime.fromtimestamp(time.time() if at is None else at, zone).date()
    days = [today - dt.timedelta(days=n) for n in range(DASHBOARD_DAYS - 1, -1, -1)]
    return usage_by_day_and_model(user_id, days)


def usage_by_day_and_model(user_id: int, days: list[dt.date]) -> list[dict[str, Any]]:
    """The user's consume logs on these consecutive calendar days (settings.TIME_ZONE),
    grouped by day and model in the database."""
    zone = ZoneInfo(settings.TIME_ZONE)
    starts = [
        int(dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp())
        for day in [*days, days[-1] + dt.timedelta(days=1)]
    ]
    # Computed per day rather than with a fixed offset, so DST changes fall on the right day.
    day_label = Case(
        *(
            When(created_at__lt=starts[index + 1], then=Value(day.isoformat()))
            for index, day in enumerate(days)
        ),
        output_field=CharField(),
    )
    rows = (
        Log.objects.filter(
            user_id=user_id,
            type=LogType.CONSUME,
            created_at__gte=starts[0],
            created_at__lt=starts[-1],
        )
        .annotate(day=day_label)
        .values("day", "model_name")
        .annotate(
            requests=Count("id"),
            total_quota=Sum("quota"),
            total_prompt=Sum("prompt_tokens"),
            total_completion=Sum("completion_tokens"),
        )
        .order_by("day", "model_name")
    )
    return [
        {
            "day": row["day"],
            "model_name": row["model_name"],
            "request_count": row["requests"],
            "quota": int(row["total_quota"] or 0),
            "prompt_tokens": int(row["total_prompt"] or 0),
            "completion_tokens": int(row["total_completion"] or 0),
        }
        for row in rows
    ]


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


# --- redemption codes -------------------------------------------------------------------


def redemption_json(code: Redemption) -> dict[str, Any]:
    return {
        "id": code.pk,
        "user_id": code.user_id,
        "key": code.key,
        "status": code.status,
        "name": code.name,
        "quota": code.quota,
        "created_time": code.created_time,
        "redeemed_time": code.redeemed_time,
        "redeemed_by": code.redeemed_by,
    }


def list_redemptions(offset: int, limit: int) -> list[Redemption]:
    return list(Redemption.objects.order_by("-id")[offset : offset + limit])


def search_redemptions(keyword: str) -> list[Redemption]:
    """Id equal to the keyword, or name starting with it."""
    match = Q(name__startswith=keyword)
    if keyword.strip().isdigit():
        match |= Q(pk=int(keyword))
    return list(Redemption.objects.filter(match).order_by("-id"))


def get_redemption(redemption_id: int) -> Redemption:
    code = Redemption.objects.filter(pk=redemption_id).first()
    if code is None:
        raise ApiError(REDEMPTION_NOT_FOUND)
    return code


def create_redemptions(creator_id: int, name: str, quota: int, count: int) -> list[str]:
    """`count` codes of one batch, all or none (One API keeps the ones made before an error)."""
    created = now()
    codes = [
        Redemption(
            user_id=creator_id,
            key=new_redemption_code(),
            name=name,
            quota=quota,
            created_time=created,
        )
        for _ in range(count)
    ]
    with transaction.atomic():
        Redemption.objects.bulk_create(codes)
    return [code.key for code in codes]


def update_redemption(fields: Mapping[str, Any]) -> Redemption:
    """The full update: name and quota."""
    with transaction.atomic():
        updated = Redemption.objects.filter(pk=fields["id"]).update(
            name=fields["name"], quota=fields["quota"]
        )
        if not updated:
            raise ApiError(REDEMPTION_NOT_FOUND)
    return get_redemption(fields["id"])


def set_redemption_status(redemption_id: int, status: int) -> Redemption:
    """Enable or disable an unused code. One API lets a used code be re-enabled, which makes
    it redeemable a second time; the condition in the UPDATE refuses that, even against a
    redemption committing at the same moment."""
    with transaction.atomic():
        updated = (
            Redemption.objects.filter(pk=redemption_id)
            .exclude(status=RedemptionStatus.USED)
            .update(status=status)
        )
        if not updated:
            get_redemption(redemption_id)
            raise ApiError(REDEMPTION_USED)
    return get_redemption(redemption_id)


def delete_redemption(redemption_id: int) -> None:
    deleted, _ = Redemption.objects.filter(pk=redemption_id).delete()
    if not deleted:
        raise ApiError(REDEMPTION_NOT_FOUND)


def export_redemptions(name: str) -> str:
    """The codes of batch `name` as CSV, oldest first."""
    codes = list(Redemption.objects.filter(name=name).order_by("id").values_list(*CSV_COLUMNS))
    if not codes:
        raise ApiError(REDEMPTION_NOT_FOUND)  # a typo should not download an empty file
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(codes)
    return buffer.getvalue()


# --- top-ups ----------------------------------------------------------------------------


def _topup_log(user_id: int, content: str, quota: int, username: str = "") -> None:
    if not username:
        username = User.objects.filter(pk=user_id).values_list("username", flat=True).first()
    Log.objects.create(
        user_id=user_id,
        username=username or "",
        created_at=now(),
        type=LogType.TOPUP,
        content=content,
        quota=quota,
    )


# Quota is a signed 64-bit column everywhere; a sum past it is an error on PostgreSQL and
# MySQL and silently a float on SQLite, so additions are bounded.
MAX_QUOTA = 2**63 - 1
QUOTA_OVERFLOW = "额度超出上限"


def add_quota(user_id: int, amount: int) -> bool:
    """Atomically add `amount`; False (nothing changed) when the sum would overflow."""
    if not 0 <= amount <= MAX_QUOTA:
        return False
    return bool(
        User.objects.filter(pk=user_id, quota__lte=MAX_QUOTA - amount).update(
            quota=F("quota") + amount
        )
    )


def redeem(user: User, key: str) -> int:
    """Redeem `key` for `user` exactly once, however many requests race for it.

    The conditional UPDATE (enabled -> used) is the lock: on every database only one
    transaction can change the row, and the others then see it used and update nothing.
    The quota, the log and the cache event commit with it or not at all.
    """
    key = key.strip()
    if not key:
        raise ApiError(NO_REDEMPTION_KEY)
    with transaction.atomic():
        won = Redemption.objects.filter(key=key, status=RedemptionStatus.ENABLED).update(
            status=RedemptionStatus.USED, redeemed_time=now(), redeemed_by=user.pk
        )
        if not won:
            exists = Redemption.objects.filter(key=key).exists()
            raise ApiError(USED_REDEMPTION_KEY if exists else INVALID_REDEMPTION_KEY)
        quota = Redemption.objects.filter(key=key).values_list("quota", flat=True).get()
        if not add_quota(user.pk, quota):
            raise ApiError(QUOTA_OVERFLOW)  # rolls the redemption back too
        _topup_log(user.pk, f"通过兑换码充值 {format_quota(quota)}", quota, user.username)
        caching.invalidate(caching.USER, user.pk)
    return quota


def admin_top_up(user_id: int, quota: int, remark: str = "") -> None:
    """`POST /api/topup`, the hook for external payment systems."""
    with transaction.atomic():
        if not User.objects.filter(pk=user_id).exists():
            raise ApiError(USER_NOT_FOUND)
        if not add_quota(user_id, quota):
            raise ApiError(QUOTA_OVERFLOW)
        _topup_log(user_id, remark or f"通过 API 充值 {format_quota(quota)}", quota)
        caching.invalidate(caching.USER, user_id)
