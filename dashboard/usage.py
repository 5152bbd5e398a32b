"""A user's consumption by day and model over the last 7 or 30 days, for the dashboard.

Seven days are `billing.services.dashboard` (what `/api/user/dashboard` answers); other ranges
group the same way here, in the database, one CASE branch per calendar day of TIME_ZONE.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Case, CharField, Count, Sum, Value, When

from billing import services as billing
from billing.models import Log, LogType

RANGES = (7, 30)


@dataclass(frozen=True)
class UsageRow:
    day: str  # ISO date
    model: str
    requests: int
    quota: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Usage:
    days: list[str]  # every day of the range, oldest first
    rows: list[UsageRow]

    @property
    def requests(self) -> int:
        return sum(row.requests for row in self.rows)

    @property
    def quota(self) -> int:
        return sum(row.quota for row in self.rows)

    @property
    def tokens(self) -> int:
        return sum(row.tokens for row in self.rows)

    def by_model(self) -> list[UsageRow]:
        """One row per model over the whole range, the most requested first."""
        totals: dict[str, list[int]] = {}
        for row in self.rows:
            total = totals.setdefault(row.model, [0, 0, 0, 0])
            total[0] += row.requests
            total[1] += row.quota
            total[2] += row.prompt_tokens
            total[3] += row.completion_tokens
        merged = [UsageRow("", model, *numbers) for model, numbers in totals.items()]
        return sorted(merged, key=lambda row: (-row.requests, row.model))


def calendar(days: int, at: float | None = None) -> list[dt.date]:
    zone = ZoneInfo(settings.TIME_ZONE)
    today = dt.datetime.fromtimestamp(time.time() if at is None else at, zone).date()
    return [today - dt.timedelta(days=n) for n in range(days - 1, -1, -1)]


def _grouped(user_id: int, days: list[dt.date]) -> list[dict]:
    zone = ZoneInfo(settings.TIME_ZONE)
    bounds = [
        int(dt.datetime.combine(day, dt.time(), tzinfo=zone).timestamp())
        for day in [*days, days[-1] + dt.timedelta(days=1)]
    ]
    label = Case(
        *(
            When(created_at__lt=bounds[index + 1], then=Value(day.isoformat()))
            for index, day in enumerate(days)
        ),
        output_field=CharField(),
    )
    rows = (
        Log.objects.filter(
            user_id=user_id,
            type=LogType.CONSUME,
            created_at__gte=bounds[0],
            created_at__lt=bounds[-1],
        )
        .annotate(day=label)
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


def daily_usage(user_id: int, days: int = 7, at: float | None = None) -> Usage:
    dates = calendar(days, at)
    if days == billing.DASHBOARD_DAYS:
        raw = billing.dashboard(user_id, at)
    else:
        raw = _grouped(user_id, dates)
    rows = [
        UsageRow(
            day=row["day"],
            model=row["model_name"],
            requests=row["request_count"],
            quota=row["quota"],
            prompt_tokens=row["prompt_tokens"],
            completion_tokens=row["completion_tokens"],
        )
        for row in raw
    ]
    return Usage([day.isoformat() for day in dates], rows)
