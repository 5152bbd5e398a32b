"""Streams that end badly: no [DONE], dropped connections, error events, client disconnects."""

from __future__ import annotations

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import pricing
from billing.models import Log
from relay.tokens import count_text_tokens
from tests.relay.conftest import World

pytestmark = pytest.mark.django_db

STREAM = {
    "model": "gpt-3.5-turbo",
    "messages": [{"role": "user", "content": "Tell me something"}],
    "stream": True,
}


def test_done_is_appended_when_upstream_omits_it(world: World) -> None:
    world.upstream.scenario = "no_done"
    result = world.client.post("/v1/chat/completions", STREAM)
    assert result.events[-1] == "[DONE]"
    assert result.body.count(b"[DONE]") == 1


def test_without_upstream_usage_completion_is_counted(world: World) -> None:
    world.upstream.scenario = "no_usage"
    result = world.client.post("/v1/chat/completions", STREAM)
    assert result.status == 200
    world.refresh()
    log = Log.objects.get()
    assert log.completion_tokens == count_text_tokens(world.upstream.reply, "gpt-3.5-turbo")
    assert log.prompt_tokens > 0


def test_reasoning_and_tool_arguments_are_billed(world: World) -> None:
    world.upstream.scenario = "tool_call"
    payload = {
        **STREAM,
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}},
            }
        ],
    }
    result = world.client.post("/v1/chat/completions", payload)
    calls = [
        e["choices"][0]["delta"].get("tool_calls")
        for e in result.events
        if e != "[DONE]" and e["choices"]
    ]
    assert any(calls)
    world.refresh()
    assert Log.objects.get().completion_tokens > 0


def test_dropped_upstream_reaches_the_client_as_an_error_event(world: World) -> None:
    world.upstream.scenario = "drop_mid_stream"
    result = world.client.post("/v1/chat/completions", STREAM)
    assert result.status == 200
    last = result.events[-1]
    assert last != "[DONE]"
    assert last["error"]["code"] == "stream_interrupted"
    world.refresh()
    log = Log.objects.get()
    # Billed for what was generated before the drop: two pieces of the reply.
    assert 0 < log.completion_tokens < count_text_tokens(world.upstream.reply, "gpt-3.5-turbo")


def test_upstream_error_event_is_forwarded(world: World) -> None:
    world.upstream.scenario = "error_mid_stream"
    result = world.client.post("/v1/chat/completions", STREAM)
    events = result.events
    assert events[-1]["error"]["type"] == "server_error"
    assert "[DONE]" not in events


def test_client_disconnect_stops_upstream_and_bills_the_partial_answer(world: World) -> None:
    world.upstream.scenario = "slow_stream"
    world.upstream.chunk_delay = 0.3
    started = time.monotonic()

    result = world.client.post("/v1/chat/completions", STREAM, disconnect_after_frames=2)

    assert time.monotonic() - started < 2.0  # the full stream would take several seconds
    assert len(result.frames) == 2
    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert 0 < log.completion_tokens < count_text_tokens(world.upstream.reply, "gpt-3.5-turbo")
    ratio = pricing.model_ratio("gpt-3.5-turbo")
    completion = pricing.completion_ratio("gpt-3.5-turbo")
    expected = pricing.text_quota(log.prompt_tokens, log.completion_tokens, ratio, completion)
    assert log.quota == expected == world.user.used_quota
    assert world.runtime.ledger.user_available(world.user.id) == world.user.quota


def test_client_gone_before_the_first_frame_still_settles(world: World) -> None:
    world.upstream.scenario = "slow_stream"
    world.upstream.chunk_delay = 0.3

    result = world.client.post("/v1/chat/completions", STREAM, disconnect_after_frames=0)

    assert len(result.frames) <= 1  # at most the role chunk got out
    world.refresh()
    log = Log.objects.get()
    assert log.completion_tokens == 0
    assert log.quota == world.user.used_quota > 0  # the prompt was sent and is paid for
    assert world.runtime.ledger.user_available(world.user.id) == world.user.quota


def test_a_warm_request_reads_no_database_row(world: World) -> None:
    chat = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]}
    assert world.client.post("/v1/chat/completions", chat).status == 200  # warms the caches
    assert world.client.post("/v1/chat/completions", STREAM).status == 200

    with CaptureQueriesContext(connection) as queries:
        assert world.client.post("/v1/chat/completions", chat).status == 200
        assert world.client.post("/v1/chat/completions", STREAM).status == 200
        assert world.client.get("/v1/models").status == 200

    assert [q["sql"] for q in queries.captured_queries] == []
    world.refresh()
    assert Log.objects.count() == 4
