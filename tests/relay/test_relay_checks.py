"""Every rejection a client can get before a request reaches upstream, through the relay."""

from __future__ import annotations

import time

import pytest

from accounts.models import UserStatus
from billing.models import ApiKey, KeyStatus
from oneapi import caching
from tests.relay.conftest import KEY, World
from tests.relay_harness import RelayClient

pytestmark = pytest.mark.django_db

CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]}


def error_of(result) -> dict:
    return result.json()["error"]


def update_key(world: World, **fields) -> None:
    ApiKey.objects.filter(pk=world.key.pk).update(**fields)
    caching.invalidate(caching.KEY, world.key.key)
    world.runtime.flush()  # the write-back reloads the key's balance


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        ("", 401, "未提供令牌"),
        ("Bearer sk-" + "z" * 48, 401, "无效的令牌"),
    ],
)
def test_missing_or_unknown_key(world: World, header: str, status: int, message: str) -> None:
    result = RelayClient().post("/v1/chat/completions", CHAT, headers={"authorization": header})
    assert result.status == status
    error = error_of(result)
    assert error["message"] == f"{message} (request id: {result.headers['x-oneapi-request-id']})"
    assert error["type"] == "one_api_error"
    assert world.upstream.requests == []


@pytest.mark.parametrize("header", [f"Bearer sk-{KEY}", f"sk-{KEY}", KEY, f"Bearer {KEY}"])
def test_key_forms_accepted(world: World, header: str) -> None:
    result = RelayClient().post("/v1/chat/completions", CHAT, headers={"authorization": header})
    assert result.status == 200, result.body


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": KeyStatus.DISABLED}, "该令牌状态不可用"),
        ({"status": KeyStatus.EXPIRED}, "该令牌已过期"),
        ({"expired_time": 1}, "该令牌已过期"),
        ({"remain_quota": 0}, "该令牌额度已用尽"),
    ],
)
def test_key_rejections_are_401(world: World, fields: dict, message: str) -> None:
    update_key(world, **fields)
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 401
    assert error_of(result)["message"].startswith(message)


def test_unlimited_key_ignores_remain_quota(world: World) -> None:
    update_key(world, remain_quota=0, unlimited_quota=True)
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 200
    world.refresh()
    assert world.key.remain_quota == 0
    assert world.key.used_quota > 0


def test_key_not_yet_expired_works(world: World) -> None:
    update_key(world, expired_time=int(time.time()) + 3600)
    assert world.client.post("/v1/chat/completions", CHAT).status == 200


def test_subnet_restriction(world: World) -> None:
    update_key(world, subnet="10.0.0.0/8, 192.168.1.0/24")
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 403
    assert "该令牌只能在指定网段使用" in error_of(result)["message"]
    assert "当前 ip：127.0.0.1" in error_of(result)["message"]

    inside = RelayClient(KEY, client_ip="10.1.2.3")
    assert inside.post("/v1/chat/completions", CHAT).status == 200


def test_model_outside_the_key_list(world: World) -> None:
    update_key(world, models="gpt-4o-mini")
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 403
    assert error_of(result)["message"].startswith("该令牌无权使用模型：gpt-3.5-turbo")
    ok = world.client.post("/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"})
    assert ok.status == 200


def test_disabled_user(world: World) -> None:
    type(world.user).objects.filter(pk=world.user.pk).update(status=UserStatus.DISABLED)
    caching.invalidate(caching.USER, world.user.pk)
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 403
    assert error_of(result)["message"].startswith("用户已被封禁")


def test_insufficient_user_quota(world: World) -> None:
    type(world.user).objects.filter(pk=world.user.pk).update(quota=10)
    caching.invalidate(caching.USER, world.user.pk)
    world.runtime.flush()
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 403
    assert error_of(result)["code"] == "insufficient_user_quota"
    assert world.upstream.requests == []


def test_key_quota_checked_even_for_a_rich_user(world: World) -> None:
    """One API skips the key check when the user has 100x the reservation; we never do."""
    update_key(world, remain_quota=100)
    payload = {**CHAT, "max_tokens": 4000}
    result = world.client.post("/v1/chat/completions", payload)
    assert result.status == 403
    assert error_of(result)["code"] == "pre_consume_token_quota_failed"
    assert error_of(result)["message"].startswith("令牌额度不足")


def test_top_up_is_seen_without_restart(world: World) -> None:
    type(world.user).objects.filter(pk=world.user.pk).update(quota=10)
    caching.invalidate(caching.USER, world.user.pk)
    world.runtime.flush()
    assert world.client.post("/v1/chat/completions", CHAT).status == 403

    type(world.user).objects.filter(pk=world.user.pk).update(quota=10_000_000)
    caching.invalidate(caching.USER, world.user.pk)
    world.runtime.flush()
    assert world.client.post("/v1/chat/completions", CHAT).status == 200


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model name not specified"),
        ({"model": "gpt-3.5-turbo"}, "field messages is required"),
        ({**CHAT, "max_tokens": -1}, "max_tokens is invalid"),
    ],
)
def test_invalid_text_requests(world: World, payload: dict, message: str) -> None:
    result = world.client.post("/v1/chat/completions", payload)
    assert result.status == 400
    assert error_of(result)["code"] == "invalid_text_request"
    assert error_of(result)["message"].startswith(message)


def test_malformed_json(world: World) -> None:
    result = world.client.post("/v1/chat/completions", body=b"{not json")
    assert result.status == 400
    assert error_of(result)["code"] == "invalid_text_request"


def test_a_key_with_nul_is_unknown_without_a_query(world: World) -> None:
    result = RelayClient().post(
        "/v1/chat/completions", CHAT, headers={"authorization": "Bearer sk-a\x00b"}
    )
    assert result.status == 401
    assert error_of(result)["message"].startswith("无效的令牌")
