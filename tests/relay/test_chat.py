from __future__ import annotations

import math

import pytest

from billing import pricing
from billing.models import Log
from tests.relay.conftest import World

pytestmark = pytest.mark.django_db

CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello there"}]}


def expected_quota(model: str, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model)
    return math.ceil((prompt + completion * pricing.completion_ratio(model)) * ratio)


def test_chat_completion_is_relayed_and_billed_exactly(world: World) -> None:
    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 200, result.body
    body = result.json()
    assert body["object"] == "chat.completion"
    assert result.headers["x-oneapi-request-id"]
    assert world.upstream.last_request.headers["authorization"] == "Bearer sk-upstream"
    usage = body["usage"]
    quota = expected_quota("gpt-3.5-turbo", usage["prompt_tokens"], usage["completion_tokens"])

    world.refresh()
    assert world.user.quota == 10_000_000 - quota
    assert world.user.used_quota == quota
    assert world.user.request_count == 1
    assert world.key.remain_quota == 5_000_000 - quota
    assert world.key.used_quota == quota
    assert world.channel.used_quota == quota
    log = Log.objects.get()
    assert log.quota == quota
    assert log.model_name == "gpt-3.5-turbo"
    assert log.token_name == "test key"
    assert log.prompt_tokens == usage["prompt_tokens"]
    assert log.completion_tokens == usage["completion_tokens"]
    assert log.request_id == result.headers["x-oneapi-request-id"]
    assert not log.is_stream


def test_stream_forwards_events_and_bills_from_usage(world: World) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert result.headers["x-accel-buffering"] == "no"
    events = result.events
    assert events[-1] == "[DONE]"
    # We asked upstream for usage; the client did not, so the usage chunk is stripped.
    assert world.upstream.last_request.json["stream_options"] == {"include_usage": True}
    assert all(e == "[DONE]" or e.get("choices") for e in events)
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == world.upstream.reply

    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert log.completion_tokens == world.upstream.completion_tokens
    assert world.user.used_quota == log.quota > 0


def test_stream_keeps_usage_chunk_when_client_asked(world: World) -> None:
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    result = world.client.post("/v1/chat/completions", payload)

    usage_chunks = [e for e in result.events if e != "[DONE]" and e.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["choices"] == []
