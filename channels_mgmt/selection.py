"""Channel selection over an in-memory routing table; no database access per request.

Among enabled channels serving (group, model), the highest priority tier that still has a
channel not excluded is used, and the pick inside it is weighted-random by `weight` (One API
stores weight but picks uniformly). Channels that already failed in this request are
excluded, so retries never hit them again and fall to lower tiers once a tier is exhausted.
A weight of 0 makes a channel a standby: it is picked only when its tier has no positive
weight left.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

from channels_mgmt.models import Ability, Channel, ChannelStatus
from oneapi import caching


@dataclass(frozen=True)
class ChannelInfo:
    """What the relay needs of a channel, read once per routing-table load."""

    id: int
    type: int
    name: str
    key: str
    base_url: str
    status: int
    priority: int
    weight: int
    models: tuple[str, ...]
    model_mapping: dict[str, str]
    config: dict[str, object]
    system_prompt: str
    other: str

    @property
    def is_enabled(self) -> bool:
        return self.status == ChannelStatus.ENABLED


def _json_object(raw: str) -> dict:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def channel_info(channel: Channel) -> ChannelInfo:
    return ChannelInfo(
        id=channel.pk,
        type=channel.type,
        name=channel.name,
        key=channel.key,
        base_url=channel.base_url,
        status=channel.status,
        priority=channel.priority,
        weight=channel.weight,
        models=tuple(channel.model_list()),
        model_mapping={str(k): str(v) for k, v in _json_object(channel.model_mapping).items() if v},
        config=_json_object(channel.config),
        system_prompt=channel.system_prompt,
        other=channel.other,
    )


@dataclass
class RoutingTable:
    channels: dict[int, ChannelInfo] = field(default_factory=dict)
    # (group, model) -> channels sorted by priority, highest first
    candidates: dict[tuple[str, str], list[ChannelInfo]] = field(default_factory=dict)

    def models_for_group(self, group: str) -> list[str]:
        return sorted({model for (g, model) in self.candidates if g == group})


def load_routing_table() -> RoutingTable:
    channels = {ch.pk: channel_info(ch) for ch in Channel.objects.all()}
    grouped: dict[tuple[str, str], list[ChannelInfo]] = defaultdict(list)
    for group, model, channel_id in Ability.objects.filter(enabled=True).values_list(
        "group", "model", "channel_id"
    ):
        info = channels.get(channel_id)
        if info is not None and info.is_enabled:
            grouped[(group, model)].append(info)
    for infos in grouped.values():
        infos.sort(key=lambda info: (-info.priority, info.id))
    return RoutingTable(channels=channels, candidates=dict(grouped))


_table = caching.Reloadable(caching.CHANNELS, load_routing_table)


def routing_table() -> RoutingTable:
    """The current table; the first call (or the first after a change) loads it."""
    return _table.get()


def pick_channel(
    table: RoutingTable,
    group: str,
    model: str,
    excluded: Collection[int] = (),
    rng: random.Random | None = None,
) -> ChannelInfo | None:
    """Weighted-random pick from the best priority tier with a channel not in `excluded`."""
    candidates = [c for c in table.candidates.get((group, model), ()) if c.id not in excluded]
    if not candidates:
        return None
    top = candidates[0].priority
    tier = [c for c in candidates if c.priority == top]
    chooser = rng or random
    weighted = [c for c in tier if c.weight > 0]
    if not weighted:
        return chooser.choice(tier)
    return chooser.choices(weighted, weights=[c.weight for c in weighted], k=1)[0]
