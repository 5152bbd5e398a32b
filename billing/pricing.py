"""Ratios and the quota arithmetic: the only place that turns usage into integer quota.

The float operations are done in One API's order so results match it to the unit (Go's
float64 and Python's float are the same IEEE doubles).
"""

from __future__ import annotations

import logging
import math

from billing import ratio_defaults
from oneapi import options
from oneapi.options import OptionSnapshot

logger = logging.getLogger(__name__)

QUOTA_PER_USD = ratio_defaults.QUOTA_PER_USD


def _base_model_name(model: str) -> str:
    # One API prices "qwen-max-internet" and "command-r-internet" as their base model.
    if model.startswith(("qwen-", "command-")) and model.endswith("-internet"):
        return model.removesuffix("-internet")
    return model


def _lookup(configured: dict, defaults: dict, model: str, channel_type: int) -> float | None:
    typed = f"{model}({channel_type})"
    for name in (typed, model):
        for table in (configured, defaults):
            value = table.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
    return None


def _options(snapshot: OptionSnapshot | None) -> OptionSnapshot:
    return snapshot if snapshot is not None else options.snapshot()


def model_ratio(model: str, channel_type: int = 0, snapshot: OptionSnapshot | None = None) -> float:
    name = _base_model_name(model)
    ratio = _lookup(
        _options(snapshot).get_json("ModelRatio"),
        ratio_defaults.DEFAULT_MODEL_RATIO,
        name,
        channel_type,
    )
    if ratio is None:
        logger.warning("model ratio not found: %s; charging ratio %s", model, 30)
        return float(ratio_defaults.UNKNOWN_MODEL_RATIO)
    return ratio


def completion_ratio(
    model: str, channel_type: int = 0, snapshot: OptionSnapshot | None = None
) -> float:
    name = _base_model_name(model)
    ratio = _lookup(
        _options(snapshot).get_json("CompletionRatio"),
        ratio_defaults.DEFAULT_COMPLETION_RATIO,
        name,
        channel_type,
    )
    return ratio if ratio is not None else ratio_defaults.builtin_completion_ratio(name)


def group_ratio(group: str, snapshot: OptionSnapshot | None = None) -> float:
    value = _options(snapshot).get_json("GroupRatio").get(group)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return 1.0


def text_quota(
    prompt_tokens: int, completion_tokens: int, ratio: float, completion_ratio_value: float
) -> int:
    """One API: ceil((prompt + completion × completion_ratio) × ratio), at least 1 when used."""
    if prompt_tokens + completion_tokens == 0:
        return 0
    quota = math.ceil((prompt_tokens + completion_tokens * completion_ratio_value) * ratio)
    if ratio != 0 and quota <= 0:
        return 1
    return quota


def pre_consume_quota(
    prompt_tokens: int, max_tokens: int, ratio: float, snapshot: OptionSnapshot | None = None
) -> int:
    """The reservation taken before calling upstream; truncated like One API's int64()."""
    tokens = _options(snapshot).get_int("PreConsumedQuota") + prompt_tokens + max(max_tokens, 0)
    return int(tokens * ratio)


def ratio_text(model_ratio_value: float, group_ratio_value: float, completion: float) -> str:
    """The consumption log content: model × group × completion ratios."""
    return f"倍率：{model_ratio_value:g} × {group_ratio_value:g} × {completion:g}"
