from __future__ import annotations

import random
from collections import Counter

import pytest

from channels_mgmt import selection, services
from channels_mgmt.models import ChannelStatus
from tests.factories import make_channel

pytestmark = pytest.mark.django_db


def test_picks_only_from_the_highest_priority_tier() -> None:
    high = make_channel(models="m", priority=10)
    make_channel(models="m", priority=0)

    table = selection.load_routing_table()

    picks = {selection.pick_channel(table, "default", "m").id for _ in range(50)}
    assert picks == {high.pk}


def test_weighted_random_follows_the_weights() -> None:
    # given: weights 1 and 3 in one tier
    light = make_channel(models="m", weight=1)
    heavy = make_channel(models="m", weight=3)
    table = selection.load_routing_table()
    rng = random.Random(1234)

    # when
    counts = Counter(selection.pick_channel(table, "default", "m", rng=rng).id for _ in range(8000))

    # then: 25% / 75% within 3 standard deviations (sd ≈ 0.48% at n=8000)
    share = counts[heavy.pk] / 8000
    assert 0.735 < share < 0.765
    assert counts[light.pk] + counts[heavy.pk] == 8000


def test_excluded_channels_fall_back_to_lower_tiers() -> None:
    first = make_channel(models="m", priority=10)
    second = make_channel(models="m", priority=10)
    lower = make_channel(models="m", priority=1)
    table = selection.load_routing_table()

    assert selection.pick_channel(table, "default", "m", excluded={first.pk}).id == second.pk
    assert selection.pick_channel(table, "default", "m", excluded={first.pk, second.pk}).id == (
        lower.pk
    )
    assert (
        selection.pick_channel(table, "default", "m", excluded={first.pk, second.pk, lower.pk})
        is None
    )


def test_zero_weight_is_standby() -> None:
    active = make_channel(models="m", weight=1)
    standby = make_channel(models="m", weight=0)
    table = selection.load_routing_table()

    assert {selection.pick_channel(table, "default", "m").id for _ in range(50)} == {active.pk}
    assert selection.pick_channel(table, "default", "m", excluded={active.pk}).id == standby.pk


def test_group_and_model_must_match_and_disabled_channels_are_skipped() -> None:
    make_channel(models="m", group="vip")
    make_channel(models="m", status=ChannelStatus.MANUALLY_DISABLED)
    table = selection.load_routing_table()

    assert selection.pick_channel(table, "default", "m") is None
    assert selection.pick_channel(table, "vip", "m") is not None
    assert table.models_for_group("vip") == ["m"]


def test_cached_table_is_dropped_on_channel_writes(django_assert_num_queries) -> None:
    channel = make_channel(models="m")
    table = selection.routing_table()
    with django_assert_num_queries(0):
        assert selection.routing_table() is table

    services.set_channel_status(channel.pk, ChannelStatus.AUTO_DISABLED)

    assert selection.pick_channel(selection.routing_table(), "default", "m") is None


def test_model_mapping_and_config_are_parsed_once() -> None:
    make_channel(models="m", model_mapping='{"m": "real-m", "x": ""}', config="not json")
    info = next(iter(selection.load_routing_table().channels.values()))

    assert info.model_mapping == {"m": "real-m"}
    assert info.config == {}
