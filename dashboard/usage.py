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

from billing import services as billing

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


def daily_usage(user_id: int, days: int = 7, at: float | None = None) -> Usage:
    dates = calendar(days, at)
    if days == billing.DASHBOARD_DAYS:
        raw = billing.dashboard(user_id, at)
    else:
        raw = billing.usage_by_day_and_model(user_id, dates)
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
