from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from accounts.models import Role
from billing.models import Log
from channels_mgmt.models import ChannelStatus
from channels_mgmt.services import update_channel
from oneapi.options import set_option
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI
from tests.relay.conftest import KEY, World
from tests.relay_harness import RelayClient

pytestmark = pytest.mark.django_db

CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def second_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


@pytest.fixture
def third_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


def test_without_retries_a_failure_is_returned_after_one_attempt(
    world: World, second_upstream: FakeOpenAI
) -> None:
    make_channel(base_url=second_upstream.base_url)
    world.upstream.scenario = "error_500"
    second_upstream.scenario = "error_500"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 500
    assert len(world.upstream.requests) + len(second_upstream.requests) == 1


def test_retries_exclude_every_failed_channel(
    world: World, second_upstream: FakeOpenAI, third_upstream: FakeOpenAI
) -> None:
    set_option("RetryTimes", "2")
    make_channel(base_url=second_upstream.base_url)
    make_channel(base_url=third_upstream.base_url)
    for fake in (world.upstream, second_upstream, third_upstream):
        fake.scenario = "error_503"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 503
    # Three attempts, one per channel: no channel was tried twice.
    assert [len(f.requests) for f in (world.upstream, second_upstream, third_upstream)] == [1, 1, 1]
    world.refresh()
    assert world.user.used_quota == 0
    assert world.runtime.ledger.user_available(world.user.id) == world.user.quota


def test_failover_falls_to_lower_priority_and_bills_the_channel_that_answered(
    world: World, second_upstream: FakeOpenAI
) -> None:
    set_option("RetryTimes", "1")
    backup = make_channel(base_url=second_upstream.base_url, priority=0)
    update_channel(world.channel.pk, {"priority": 10})
    world.upstream.scenario = "error_502_html"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 200, result.body
    assert len(world.upstream.requests) == 1
    assert len(second_upstream.requests) == 1
    world.refresh()
    backup.refresh_from_db()
    assert Log.objects.get().channel_id == backup.pk
    assert backup.used_quota == world.user.used_quota > 0
    assert world.channel.used_quota == 0


def test_bad_request_is_not_retried(world: World, second_upstream: FakeOpenAI) -> None:
    set_option("RetryTimes", "3")
    make_channel(base_url=second_upstream.base_url)
    world.upstream.scenario = "error_400"
    second_upstream.scenario = "error_400"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 400
    assert len(world.upstream.requests) + len(second_upstream.requests) == 1
    error = result.json()["error"]
    assert error["type"] == "invalid_request_error"  # the upstream's own error object


def test_final_429_keeps_status_with_one_api_message_and_upstream_reason(world: World) -> None:
    world.upstream.scenario = "error_429"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 429
    message = result.json()["error"]["message"]
    assert message.startswith("当前分组上游负载已饱和，请稍后再试：")
    assert "Rate limit" in message or "rate limit" in message
    assert f"(request id: {result.headers['x-oneapi-request-id']})" in message


def test_html_error_body_becomes_bad_response_status_code(world: World) -> None:
    world.upstream.scenario = "error_502_html"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 502
    error = result.json()["error"]
    assert error["type"] == "upstream_error"
    assert error["code"] == "bad_response_status_code"
    assert error["param"] == "502"


def test_connection_failure_is_retried_on_another_channel(
    world: World, second_upstream: FakeOpenAI
) -> None:
    set_option("RetryTimes", "1")
    make_channel(base_url=second_upstream.base_url)
    world.upstream.scenario = "reset"
    second_upstream.scenario = "reset"
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 500
    assert result.json()["error"]["code"] == "do_request_failed"

    world.upstream.scenario = "ok"
    second_upstream.scenario = "reset"
    for _ in range(5):
        assert world.client.post("/v1/chat/completions", CHAT).status == 200


def test_no_channel_for_the_model_is_503(world: World) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "model": "gpt-4-nowhere"})

    assert result.status == 503
    assert result.json()["error"]["message"].startswith(
        "当前分组 default 下对于模型 gpt-4-nowhere 无可用渠道"
    )


def test_auto_disable_on_invalid_key_takes_the_channel_out_of_routing(
    world: World, second_upstream: FakeOpenAI
) -> None:
    set_option("AutomaticDisableChannelEnabled", "true")
    set_option("RetryTimes", "1")
    world.upstream.scenario = "error_401"
    make_channel(base_url=second_upstream.base_url)  # also serves gpt-3.5-turbo

    for _ in range(6):
        assert world.client.post("/v1/chat/completions", CHAT).status == 200

    world.channel.refresh_from_db()
    assert world.channel.status == ChannelStatus.AUTO_DISABLED
    # After the first 401, the dead channel is never picked again.
    assert len(world.upstream.requests) <= 1


def test_auto_disable_is_off_by_default(world: World) -> None:
    world.upstream.scenario = "error_401"
    assert world.client.post("/v1/chat/completions", CHAT).status == 401
    world.channel.refresh_from_db()
    assert world.channel.status == ChannelStatus.ENABLED


def test_model_mapping_renames_and_keeps_unknown_fields(world: World) -> None:
    update_channel(
        world.channel.pk, {"model_mapping": json.dumps({"gpt-3.5-turbo": "gpt-4o-mini"})}
    )
    payload = {**CHAT, "custom_vendor_field": {"a": [1, 2]}, "top_k": 5}

    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    sent = world.upstream.last_request.json
    assert sent["model"] == "gpt-4o-mini"
    assert sent["custom_vendor_field"] == {"a": [1, 2]}
    assert sent["top_k"] == 5
    world.refresh()
    assert Log.objects.get().model_name == "gpt-4o-mini"


def test_unedited_body_passes_through_byte_for_byte(world: World) -> None:
    raw = b'{"model":"gpt-3.5-turbo",  "messages":[{"role":"user","content":"Hi"}], "x":1.50}'
    result = world.client.post("/v1/chat/completions", body=raw)
    assert result.status == 200
    assert world.upstream.last_request.body == raw


def test_forced_system_prompt_replaces_or_leads(world: World) -> None:
    update_channel(world.channel.pk, {"system_prompt": "Be terse."})
    world.client.post("/v1/chat/completions", CHAT)
    assert world.upstream.last_request.json["messages"][0] == {
        "role": "system",
        "content": "Be terse.",
    }
    messages = [{"role": "system", "content": "Be verbose."}, *CHAT["messages"]]
    world.client.post("/v1/chat/completions", {**CHAT, "messages": messages})
    sent = world.upstream.last_request.json["messages"]
    assert sent[0]["content"] == "Be terse."
    assert len(sent) == 2
    world.refresh()
    assert all(log.system_prompt_reset for log in Log.objects.all())


def test_forced_channel_suffix_is_for_admins_only(
    world: World, second_upstream: FakeOpenAI
) -> None:
    other = make_channel(base_url=second_upstream.base_url, models="special-model")

    result = RelayClient(f"{KEY}-{other.pk}").post("/v1/chat/completions", CHAT)
    assert result.status == 403
    assert "普通用户不支持指定渠道" in result.json()["error"]["message"]

    type(world.user).objects.filter(pk=world.user.pk).update(role=Role.ADMIN)
    from oneapi import caching

    caching.invalidate(caching.USER, world.user.pk)
    result = RelayClient(f"{KEY}-{other.pk}").post("/v1/chat/completions", CHAT)
    assert result.status == 200, result.body
    assert len(second_upstream.requests) == 1  # model and group checks are skipped
    result = RelayClient(f"{KEY}-999999").post("/v1/chat/completions", CHAT)
    assert result.status == 400
    assert "无效的渠道 Id" in result.json()["error"]["message"]
