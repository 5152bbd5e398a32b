"""Stacked bar charts (one bar a day, one colour a model), laid out here and drawn as SVG by
`partials/bar_chart.html`: no chart library, nothing to load in the browser."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext as _

from dashboard.usage import Usage, UsageRow

WIDTH = 560
HEIGHT = 240
LEFT = 72  # room for the value axis labels
RIGHT = 16  # room for half of the last day's label
TOP = 12
BOTTOM = 28  # room for the day labels
SERIES = 8  # colours in the stylesheet (--series-0 .. --series-7); the last one is "other"
MAX_LABELS = 10  # day labels under the bars at most; the others stay in the tooltips


@dataclass(frozen=True)
class Segment:
    model: str
    series: int
    y: float
    height: float
    tooltip: str


@dataclass(frozen=True)
class Bar:
    day: str
    label: str  # "MM-DD" when shown under the bar, else ""
    x: float
    width: float
    total: float
    total_label: str
    segments: list[Segment]

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 2)


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class LegendEntry:
    model: str
    series: int


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    bars: list[Bar]
    ticks: list[Tick]
    legend: list[LegendEntry]
    total_label: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right_edge: int = WIDTH - RIGHT
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return all(bar.total == 0 for bar in self.bars)


def nice_ceiling(value: float) -> float:
    """1, 2, 2.5 or 5 times a power of ten, at least `value` (an axis maximum or step)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def axis_top(value: float, *, integer: bool) -> float:
    """The axis maximum: four equal steps, whole numbers for counts."""
    if integer:
        return 4 * max(1, math.ceil(nice_ceiling(value / 4)))
    return nice_ceiling(value)


def series_of(usage: Usage) -> dict[str, int]:
    """A colour per model, the same in every chart: the most used models get their own,
    the rest share the last one."""
    models = [row.model for row in usage.by_model()]
    return {model: min(index, SERIES - 1) for index, model in enumerate(models)}


def legend(series: dict[str, int]) -> list[LegendEntry]:
    entries = [LegendEntry(model, index) for model, index in series.items() if index < SERIES - 1]
    if any(index == SERIES - 1 for index in series.values()):
        others = [m for m, i in series.items() if i == SERIES - 1]
        entries.append(LegendEntry(others[0] if len(others) == 1 else _("Other"), SERIES - 1))
    return entries


def stacked_bars(
    chart_id: str,
    title: str,
    usage: Usage,
    value: Callable[[UsageRow], float],
    label: Callable[[float], str],
    series: dict[str, int],
    *,
    integer: bool = False,
    axis_label: Callable[[float], str] | None = None,
) -> Chart:
    """`integer`: counts, whose axis steps must be whole numbers; `axis_label`: a shorter
    form of `label` for the value axis."""
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(usage.days), 1)
    totals = dict.fromkeys(usage.days, 0.0)
    for row in usage.rows:
        totals[row.day] = totals.get(row.day, 0.0) + value(row)
    top = axis_top(max(totals.values(), default=0), integer=integer)
    scale = plot_height / top
    every = math.ceil(len(usage.days) / MAX_LABELS)
    bars = []
    for index, day in enumerate(usage.days):
        y = HEIGHT - BOTTOM
        segments = []
        for row in sorted(
            (r for r in usage.rows if r.day == day), key=lambda r: (series.get(r.model, 0), r.model)
        ):
            amount = value(row)
            if amount <= 0:
                continue
            height = amount * scale
            y -= height
            segments.append(
                Segment(
                    row.model,
                    series.get(row.model, SERIES - 1),
                    round(y, 2),
                    round(height, 2),
                    f"{day} · {row.model}: {label(amount)}",
                )
            )
        bars.append(
            Bar(
                day=day,
                label=day[5:] if (len(usage.days) - 1 - index) % every == 0 else "",
                x=round(LEFT + index * slot + slot * 0.15, 2),
                width=round(slot * 0.7, 2),
                total=totals[day],
                total_label=label(totals[day]),
                segments=segments,
            )
        )
    ticks = [
        Tick(
            round(HEIGHT - BOTTOM - plot_height * step / 4, 2),
            (axis_label or label)(top * step / 4),
        )
        for step in range(5)
    ]
    return Chart(
        id=chart_id,
        title=title,
        bars=bars,
        ticks=ticks,
        legend=legend(series),
        total_label=label(sum(totals.values())),
    )
