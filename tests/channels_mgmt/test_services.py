from __future__ import annotations

import pytest

from channels_mgmt import services
from channels_mgmt.models import Ability, Channel, ChannelStatus
from oneapi.models import CacheEvent
from tests.factories import make_channel

pytestmark = pytest.mark.django_db


def abilities_of(channel_id: int) -> set[tuple[str, str, bool, int]]:
    return set(
        Ability.objects.filter(channel_id=channel_id).values_list(
            "group", "model", "enabled", "priority"
        )
    )


def test_create_derives_one_ability_per_group_and_model() -> None:
    channel = make_channel(models="gpt-4, gpt-3.5-turbo,gpt-4", group="default,vip", priority=5)

    assert abilities_of(channel.pk) == {
        ("default", "gpt-4", True, 5),
        ("default", "gpt-3.5-turbo", True, 5),
        ("vip", "gpt-4", True, 5),
        ("vip", "gpt-3.5-turbo", True, 5),
    }
    assert CacheEvent.objects.filter(kind="channels").count() == 1


def test_multi_line_key_creates_one_channel_per_line() -> None:
    created = services.create_channels(
        {"type": 1, "name": "batch", "key": "sk-a\n\nsk-b\n sk-c ", "models": "m", "group": "g"}
    )

    assert [c.key for c in created] == ["sk-a", "sk-b", "sk-c"]
    assert Ability.objects.filter(channel__in=created).count() == 3


def test_update_rebuilds_abilities_in_the_same_write() -> None:
    channel = make_channel(models="a,b", group="default")

    services.update_channel(channel.pk, {"models": "c", "group": "vip", "priority": 2})

    assert abilities_of(channel.pk) == {("vip", "c", True, 2)}


def test_disable_and_enable_flip_abilities() -> None:
    channel = make_channel(models="a")

    assert services.set_channel_status(channel.pk, ChannelStatus.AUTO_DISABLED) is True
    assert abilities_of(channel.pk) == {("default", "a", False, 0)}
    assert services.set_channel_status(channel.pk, ChannelStatus.AUTO_DISABLED) is False
    assert services.set_channel_status(channel.pk, ChannelStatus.ENABLED) is True
    assert abilities_of(channel.pk) == {("default", "a", True, 0)}


def test_delete_disabled_removes_channels_and_their_abilities() -> None:
    kept = make_channel(models="a")
    gone = make_channel(models="a", status=ChannelStatus.MANUALLY_DISABLED)

    assert services.delete_disabled_channels() == 1
    assert list(Channel.objects.values_list("pk", flat=True)) == [kept.pk]
    assert Ability.objects.filter(channel_id=gone.pk).count() == 0


def test_a_failed_write_leaves_no_event_and_no_abilities() -> None:
    with pytest.raises(Channel.DoesNotExist):
        services.update_channel(999_999, {"models": "x"})

    assert CacheEvent.objects.count() == 0
    assert Ability.objects.count() == 0
