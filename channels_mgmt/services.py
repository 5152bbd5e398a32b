"""Channel writes. Abilities are rebuilt in the same transaction as every channel write, so the
routing index can never disagree with the channels (One API's "数据库一致性已被破坏")."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from channels_mgmt.models import Ability, Channel, ChannelStatus
from oneapi import caching


def abilities_for(channel: Channel) -> list[Ability]:
    enabled = channel.status == ChannelStatus.ENABLED
    return [
        Ability(
            group=group,
            model=model,
            channel=channel,
            enabled=enabled,
            priority=channel.priority,
            weight=channel.weight,
        )
        for group in dict.fromkeys(channel.group_list())
        for model in dict.fromkeys(channel.model_list())
    ]


def _rebuild_abilities(channels: Iterable[Channel]) -> None:
    """Requires an open transaction: replaces the ability rows of these channels."""
    channels = list(channels)
    Ability.objects.filter(channel__in=channels).delete()
    Ability.objects.bulk_create([ability for ch in channels for ability in abilities_for(ch)])


@transaction.atomic
def create_channels(fields: dict[str, Any]) -> list[Channel]:
    """Create one channel per line of ``fields["key"]`` (One API's batch add)."""
    keys = [line.strip() for line in str(fields.get("key", "")).splitlines() if line.strip()]
    now = int(time.time())
    created = [
        Channel.objects.create(**{**fields, "key": key, "created_time": now})
        for key in keys or [""]
    ]
    _rebuild_abilities(created)
    caching.invalidate(caching.CHANNELS)
    return created


@transaction.atomic
def update_channel(channel_id: int, fields: dict[str, Any]) -> Channel:
    channel = Channel.objects.select_for_update().get(pk=channel_id)
    for name, value in fields.items():
        setattr(channel, name, value)
    channel.save()
    _rebuild_abilities([channel])
    caching.invalidate(caching.CHANNELS)
    return channel


@transaction.atomic
def set_channel_status(channel_id: int, status: int) -> bool:
    """Enable or disable; returns False when the channel does not exist or already had it."""
    changed = Channel.objects.filter(pk=channel_id).exclude(status=status).update(status=status)
    if not changed:
        return False
    Ability.objects.filter(channel_id=channel_id).update(enabled=status == ChannelStatus.ENABLED)
    caching.invalidate(caching.CHANNELS)
    return True


@transaction.atomic
def delete_channel(channel_id: int) -> bool:
    deleted, _ = Channel.objects.filter(pk=channel_id).delete()
    if deleted:
        caching.invalidate(caching.CHANNELS)
    return bool(deleted)


@transaction.atomic
def delete_disabled_channels() -> int:
    disabled = [ChannelStatus.MANUALLY_DISABLED, ChannelStatus.AUTO_DISABLED]
    count = Channel.objects.filter(status__in=disabled).count()
    Channel.objects.filter(status__in=disabled).delete()
    if count:
        caching.invalidate(caching.CHANNELS)
    return count
