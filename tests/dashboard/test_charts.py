"""Usage aggregation and the SVG chart layout."""

from __future__ import annotations

import time

import pytest
from django.utils import translation

from billing import services as billing
from billing.models import Log, LogType
from dashboard import charts, usage
from oneapi import options
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_axis_maximum() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 1, 3, 7, 12, 26, 480)] == [1, 1, 5, 10, 20, 50, 500]
    # Counts get four whole-number steps.
    tops = [charts.axis_top(v, integer=True) for v in (0, 1, 3, 5, 26, 100)]
    assert tops == [4, 4, 4, 8, 40, 100]


def test_thirty_days_group_like_the_seven_day_service() -> None:
    user = make_user()
    now = int(time.time())
    for days_ago, model in ((0, "a"), (0, "a"), (2, "b"), (6, "a"), (12, "c")):
        Log.objects.create(
            user_id=user.pk,
            type=LogType.CONSUME,
            created_at=now - days_ago * 86400,
            model_name=model,
            quota=10,
            prompt_tokens=3,
            completion_tokens=4,
        )
    week = usage.daily_usage(user.pk, 7, at=now)
    month = usage.daily_usage(user.pk, 30, at=now)
    assert len(week.days) == 7 and len(month.days) == 30
    # The generic grouping gives exactly what the service gives, on the days they share.
    assert billing.usage_by_day_and_model(user.pk, usage.calendar(7, now)) == billing.dashboard(
        user.pk, now
    )
    assert week.requests == 4 and month.requests == 5
    assert [(row.model, row.requests) for row in month.by_model()] == [("a", 3), ("b", 1), ("c", 1)]
    assert month.tokens == 35 and month.quota == 50


def test_stacked_bars_layout() -> None:
    data = usage.Usage(
        days=["2026-01-01", "2026-01-02"],
        rows=[
            usage.UsageRow("2026-01-01", "a", 3, 30, 1, 1),
            usage.UsageRow("2026-01-02", "a", 1, 10, 1, 1),
            usage.UsageRow("2026-01-02", "b", 2, 20, 1, 1),
        ],
    )
    series = charts.series_of(data)
    assert series == {"a": 0, "b": 1}
    chart = charts.stacked_bars(
        "r", "Requests", data, lambda r: r.requests, str, series, integer=True
    )
    assert [bar.total for bar in chart.bars] == [3, 3]
    assert [tick.label for tick in chart.ticks] == ["0.0", "1.0", "2.0", "3.0", "4.0"]
    second = chart.bars[1]
    bottom = chart.height - charts.BOTTOM
    # Segments stack from the axis up without gaps, in series order.
    assert second.segments[0].y + second.segments[0].height == pytest.approx(bottom)
    assert second.segments[1].y + second.segments[1].height == pytest.approx(second.segments[0].y)
    assert second.segments[1].tooltip == "2026-01-02 · b: 2"
    assert not chart.empty


def test_many_models_share_the_last_colour() -> None:
    rows = [usage.UsageRow("2026-01-01", f"m{i}", 10 - i, 1, 0, 0) for i in range(10)]
    data = usage.Usage(["2026-01-01"], rows)
    series = charts.series_of(data)
    assert max(series.values()) == charts.SERIES - 1
    with translation.override("en"):
        legend = charts.legend(series)
    assert len(legend) == charts.SERIES and legend[-1].model == "Other"


def test_quota_as_money_keeps_small_amounts_readable() -> None:
    from dashboard import display

    assert display.quota(1_000_000) == "$2.00"
    assert display.quota(8) == "$0.000016"
    assert display.quota(880) == "$0.0018"
    assert display.quota(0) == "$0.00"
    options.set_option("DisplayInCurrencyEnabled", "false")
    assert display.quota(1_000_000) == "1,000,000"
