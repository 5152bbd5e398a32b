from __future__ import annotations

import pytest

from billing.models import Log
from relay.catalog import ChannelType
from tests.factories import make_channel
from tests.relay.conftest import World

pytestmark = pytest.mark.django_db


def test_proxy_passes_the_request_through_with_the_channel_key(world: World) -> None:
    proxy = make_channel(
        type=ChannelType.PROXY, base_url=world.upstream.base_url, key="Bearer sk-upstream"
    )

    result = world.client.get(f"/v1/oneapi/proxy/{proxy.pk}/v1/models?limit=5")

    assert result.status == 200, result.body
    assert result.json()["object"] == "list"
    sent = world.upstream.last_request
    assert sent.path == "/v1/models"
    assert sent.query == {"limit": "5"}
    assert sent.headers["authorization"] == "Bearer sk-upstream"
    world.refresh()
    assert Log.objects.count() == 0  # no billing, as in One API


def test_proxy_keeps_upstream_errors(world: World) -> None:
    proxy = make_channel(
        type=ChannelType.PROXY, base_url=world.upstream.base_url, key="Bearer wrong"
    )
    result = world.client.post(f"/v1/oneapi/proxy/{proxy.pk}/v1/chat/completions", {})
    assert result.status == 401
    assert result.json()["error"]["code"] == "invalid_api_key"


def test_proxy_refuses_channels_of_other_types(world: World) -> None:
    result = world.client.get(f"/v1/oneapi/proxy/{world.channel.pk}/v1/models")
    assert result.status == 400
    assert world.upstream.requests == []
    assert world.client.get("/v1/oneapi/proxy/abc/v1/models").status == 400
