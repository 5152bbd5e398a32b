"""How numbers of the billing model are shown: quota as money or as points, as One API."""

from __future__ import annotations

import math

from oneapi import options

DEFAULT_QUOTA_PER_UNIT = 500000.0


def quota_per_unit() -> float:
    return options.get_float("QuotaPerUnit") or DEFAULT_QUOTA_PER_UNIT


def in_currency() -> bool:
    return options.get_bool("DisplayInCurrencyEnabled")


def quota(value: int | float, digits: int = 2) -> str:
    """`$1.25` when DisplayInCurrencyEnabled, else the raw points (`625,000`)."""
    if in_currency():
        amount = value / quota_per_unit()
        if 0 < abs(amount) < 10 ** (-digits):
            # Two significant digits, so a single request does not read as $0.00.
            places = min(-math.floor(math.log10(abs(amount))) + 1, 10)
            return f"${amount:.{places}f}"
        return f"${amount:,.{digits}f}"
    return f"{int(value):,}"


def quota_axis(value: float) -> str:
    """A short quota for a chart axis: `$0.000015`, `$2.5`, `1,000`."""
    if in_currency():
        text = quota(value)
        return text.rstrip("0").rstrip(".") if "." in text else text
    return f"{int(value):,}"


def tokens(value: int) -> str:
    return f"{value:,}"
