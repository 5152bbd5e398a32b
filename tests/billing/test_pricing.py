from __future__ import annotations

import json

import pytest

from billing import pricing
from oneapi.options import set_option

pytestmark = pytest.mark.django_db


def test_default_ratios_match_one_api() -> None:
    assert pricing.model_ratio("gpt-4") == 15
    assert pricing.model_ratio("gpt-4o-mini") == 0.075
    assert pricing.completion_ratio("gpt-4") == 2
    assert pricing.completion_ratio("gpt-3.5-turbo") == 3
    assert pricing.completion_ratio("whisper-1") == 0
    assert pricing.group_ratio("default") == 1


def test_unknown_model_costs_ratio_30() -> None:
    assert pricing.model_ratio("no-such-model-xyz") == 30


def test_internet_suffix_is_priced_as_the_base_model() -> None:
    assert pricing.model_ratio("qwen-max-internet") == pricing.model_ratio("qwen-max")


def test_configured_ratio_wins_and_typed_key_wins_over_plain() -> None:
    set_option("ModelRatio", json.dumps({"my-model": 2, "my-model(14)": 3}))

    assert pricing.model_ratio("my-model") == 2
    assert pricing.model_ratio("my-model", channel_type=14) == 3


def test_configured_group_ratio_and_unknown_group() -> None:
    set_option("GroupRatio", json.dumps({"default": 1, "vip": 0.5}))

    assert pricing.group_ratio("vip") == 0.5
    assert pricing.group_ratio("nobody") == 1


@pytest.mark.parametrize(
    ("prompt", "completion", "ratio", "completion_ratio", "expected"),
    [
        (100, 50, 15, 2, 3000),  # gpt-4: (100 + 100) × 15
        (10, 9, 0.075, 4, 4),  # ceil((10 + 36) × 0.075) = ceil(3.45)
        (1, 0, 0.0001, 1, 1),  # rounds up to at least one unit
        (0, 0, 15, 2, 0),  # nothing used, nothing charged
        (5, 5, 0, 1, 0),  # free model
    ],
)
def test_text_quota(
    prompt: int, completion: int, ratio: float, completion_ratio: float, expected: int
) -> None:
    assert pricing.text_quota(prompt, completion, ratio, completion_ratio) == expected


def test_pre_consume_includes_the_base_reservation_and_truncates() -> None:
    # (500 + 20 + 100) × 0.075 = 46.5 -> 46
    assert pricing.pre_consume_quota(20, 100, 0.075) == 46
    set_option("PreConsumedQuota", "0")
    assert pricing.pre_consume_quota(20, 0, 1.5) == 30


def test_ratio_text_lists_the_three_ratios() -> None:
    assert pricing.ratio_text(15, 1, 2) == "倍率：15 × 1 × 2"
