"""`/v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API as an inbound
format, natively on Anthropic channels and converted on OpenAI ones."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from django.test import override_settings

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.services import update_channel
from oneapi.options import set_option
from relay.adaptors import vertex
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.inbound import anthropic_convert as convert
from relay.streaming import LineSplitter
from relay.tokens import count_text_tokens
from relay.usage import image_tokens
from tests.factories import make_channel
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.image_host import FakeImageHost
from tests.fakes.vertex_upstream import FakeVertex
from tests.relay.conftest import KEY, World
from tests.relay_harness import RelayClient, Result

CLAUDE = "claude-3-5-sonnet-20241022"
GPT = "gpt-3.5-turbo"
ANTHROPIC_KEY = "sk-ant-test"
VERSION = {"anthropic-version": "2023-06-01"}
PNG_DATA = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}


def messages_body(model: str = CLAUDE, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello there"}],
        **extra,
    }


def events_of(result: Result) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each event of an Anthropic stream."""
    events = []
    for block in result.body.split(b"\n\n"):
        if not block.strip():
            continue
        lines = block.split(b"\n")
        assert lines[0].startswith(b"event: ") and lines[1].startswith(b"data: "), block
        events.append((lines[0][7:].decode(), orjson.loads(lines[1][6:])))
    return events


def names_of(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    for name, data in events:
        assert data["type"] == name
    return [name for name, _ in events]


def quota_for(model: str, channel_type: int, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, channel_type) * pricing.group_ratio("default")
    completion_ratio = pricing.completion_ratio(model, channel_type)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture
def claude(world: World, anthropic: FakeAnthropic) -> Channel:
    return make_channel(
        type=ChannelType.ANTHROPIC,
        base_url=anthropic.base_url,
        key=ANTHROPIC_KEY,
        models=f"{CLAUDE},claude-latest",
        model_mapping=json.dumps({"claude-latest": CLAUDE}),
    )


@pytest.fixture
def sdk_client(world: World) -> RelayClient:
    """Sends the key the way Anthropic's SDK does: `x-api-key`, no Authorization."""
    return RelayClient(None)


def post(client: RelayClient, payload: Any, path: str = "/v1/messages", **headers: str) -> Result:
    sent = {"x-api-key": f"sk-{KEY}", **VERSION, **headers}
    return client.post(path, payload, headers=sent)


# ---------------------------------------------------------------------- native passthrough


def test_anthropic_channel_gets_the_body_byte_for_byte_and_is_billed_from_its_usage(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    # Spacing and a field no converter knows: anything re-serialised would differ.
    raw = b'{"model": "%s",  "max_tokens": 100, "top_k": 5, ' % CLAUDE.encode()
    raw += b'"messages": [{"role": "user", "content": "Hi"}]}'

    result = sdk_client.post(
        "/v1/messages",
        body=raw,
        headers={"x-api-key": f"sk-{KEY}", **VERSION, "anthropic-beta": "beta-x"},
    )

    assert result.status == 200, result.body
    assert result.headers["request-id"] == result.headers["x-oneapi-request-id"]
    sent = anthropic.last_request
    assert sent.body == raw
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "beta-x"
    message = result.json()
    assert message["type"] == "message"
    assert message["id"].startswith("msg_")
    assert message["content"] == [{"type": "text", "text": anthropic.reply}]
    assert message["usage"]["input_tokens"] == 13
    assert message["usage"]["output_tokens"] == 9
    assert world.upstream.requests == []

    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (13, 9, CLAUDE)
    assert log.channel_id == claude.pk
    assert not log.is_stream
    expected = quota_for(CLAUDE, ChannelType.ANTHROPIC, 13, 9)
    assert log.quota == expected == world.user.used_quota == world.key.used_quota


def test_model_mapping_changes_only_the_model_and_the_log_names_the_actual_model(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    payload = messages_body("claude-latest", system="Be brief.", temperature=0.2)

    result = post(sdk_client, payload)

    assert result.status == 200, result.body
    assert anthropic.last_request.json == {**payload, "model": CLAUDE}
    world.refresh()
    log = Log.objects.get()
    assert log.model_name == CLAUDE
    assert log.quota == quota_for(CLAUDE, ChannelType.ANTHROPIC, 13, 9)


def test_native_stream_is_forwarded_verbatim_and_billed_from_its_usage(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    # The fake writes JSON with ASCII escapes; re-serialising would write UTF-8.
    anthropic.reply = "Héllo from fake Claude."
    anthropic.cache_read_input_tokens = 100

    result = post(sdk_client, messages_body(stream=True))

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert b"H\\u00e9llo"[:8] in result.body
    events = events_of(result)
    assert names_of(events) == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == anthropic.reply
    for block in result.body.split(b"\n\n")[:-1]:
        data = block.split(b"\n")[1][6:]
        assert data == json.dumps(orjson.loads(data), separators=(",", ":")).encode()

    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert (log.prompt_tokens, log.completion_tokens) == (113, 9)
    assert log.quota == quota_for(CLAUDE, ChannelType.ANTHROPIC, 113, 9) == world.user.used_quota


def test_native_tool_use_round_trip(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    first = post(sdk_client, messages_body(tools=[WEATHER_TOOL])).json()

    assert first["stop_reason"] == "tool_use"
    call = first["content"][-1]
    assert call["type"] == "tool_use"
    assert call["input"] == anthropic.tool_input
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": first["content"]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call["id"], "content": "18C"}],
        },
    ]
    second = post(sdk_client, messages_body(tools=[WEATHER_TOOL], messages=history))

    assert second.status == 200, second.body
    assert second.json()["content"] == [{"type": "text", "text": anthropic.reply}]
    assert anthropic.last_request.json is not None
    assert anthropic.last_request.json["messages"] == history

    streamed = events_of(post(sdk_client, messages_body(tools=[WEATHER_TOOL], stream=True)))
    fragments = [
        d["delta"]["partial_json"]
        for n, d in streamed
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert json.loads("".join(fragments)) == anthropic.tool_input


def test_native_error_event_mid_stream_is_forwarded_and_what_was_generated_is_billed(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    anthropic.scenario = "error_mid_stream"

    result = post(sdk_client, messages_body(stream=True))

    events = events_of(result)
    assert events[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    assert "message_stop" not in names_of(events)
    world.refresh()
    log = Log.objects.get()
    assert log.completion_tokens > 0


def test_channel_system_prompt_replaces_the_clients(
    world: World, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    make_channel(
        type=ChannelType.ANTHROPIC,
        base_url=anthropic.base_url,
        key=ANTHROPIC_KEY,
        models=CLAUDE,
        system_prompt="You are a pirate.",
    )

    post(sdk_client, messages_body(system=[{"type": "text", "text": "Be brief."}]))

    assert anthropic.last_request.json is not None
    assert anthropic.last_request.json["system"] == "You are a pirate."
    world.refresh()
    assert Log.objects.get().system_prompt_reset


# ---------------------------------------------------------------------- Claude on AWS and Vertex

BEDROCK_CLAUDE = "claude-3-5-sonnet-20240620"
LLAMA = "llama3-8b-8192"
VERTEX_CLAUDE = "claude-3-5-sonnet-v2@20241022"


@pytest.fixture
def bedrock(world: World) -> Iterator[FakeBedrock]:
    with FakeBedrock(access_key="AKIDFAKE", secret_key="s3cr3t", region="us-west-2") as fake:
        make_channel(
            type=ChannelType.AWS_CLAUDE,
            base_url=fake.base_url,
            key="AKIDFAKE|s3cr3t|us-west-2",
            models=f"{BEDROCK_CLAUDE},{LLAMA}",
        )
        yield fake


@pytest.fixture
def vertex_ai(world: World) -> Iterator[FakeVertex]:
    vertex.TOKENS.entries.clear()  # channel ids repeat between tests
    with FakeVertex(project_id="fake-project", region="us-east5") as fake:
        make_channel(
            type=ChannelType.VERTEX_AI,
            base_url=fake.base_url,
            key=json.dumps(fake.service_account()),
            models=VERTEX_CLAUDE,
            config=json.dumps({"region": "us-east5"}),
        )
        yield fake
    vertex.TOKENS.entries.clear()


def test_claude_on_bedrock_gets_the_messages_body_natively(
    world: World, bedrock: FakeBedrock, sdk_client: RelayClient
) -> None:
    payload = messages_body(BEDROCK_CLAUDE, top_k=5, metadata={"user_id": "u"})

    result = post(sdk_client, payload, **{"anthropic-beta": "b1, b2"})

    assert result.status == 200, result.body
    sent = bedrock.last_request
    assert sent.model_id == "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert sent.json == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 256,
        "messages": payload["messages"],
        "top_k": 5,
        "anthropic_beta": ["b1", "b2"],
    }
    message = result.json()
    assert message["model"] == BEDROCK_CLAUDE
    assert message["content"] == [{"type": "text", "text": bedrock.reply}]
    assert message["usage"] == {"input_tokens": 17, "output_tokens": 8}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (17, 8, BEDROCK_CLAUDE)
    assert log.quota == quota_for(BEDROCK_CLAUDE, ChannelType.AWS_CLAUDE, 17, 8)


def test_claude_stream_on_bedrock_becomes_anthropics_sse(
    world: World, bedrock: FakeBedrock, sdk_client: RelayClient
) -> None:
    bedrock.write_mode = "split"  # event-stream frames cut across reads

    result = post(sdk_client, messages_body(BEDROCK_CLAUDE, stream=True, tools=[WEATHER_TOOL]))

    events = events_of(result)
    names = names_of(events)
    assert names[0] == "message_start" and names[-2:] == ["message_delta", "message_stop"]
    assert events[0][1]["message"]["model"] == BEDROCK_CLAUDE
    assert events[-1][1] == {"type": "message_stop"}  # Bedrock's metrics are not Anthropic's
    fragments = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert json.loads("".join(fragments)) == bedrock.tool_input
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens, log.is_stream) == (17, 8, True)


def test_bedrock_stream_exception_is_an_error_event(
    world: World, bedrock: FakeBedrock, sdk_client: RelayClient
) -> None:
    bedrock.scenario = "stream_exception"

    events = events_of(post(sdk_client, messages_body(BEDROCK_CLAUDE, stream=True)))

    name, data = events[-1]
    assert name == "error"
    assert data["error"]["type"] in ("api_error", "rate_limit_error")
    assert data["error"]["message"]


def test_llama_on_bedrock_goes_through_the_conversion(
    world: World, bedrock: FakeBedrock, sdk_client: RelayClient
) -> None:
    result = post(sdk_client, messages_body(LLAMA, system="Be brief."))

    assert result.status == 200, result.body
    sent = bedrock.last_request
    assert sent.json is not None
    assert "<|start_header_id|>system<|end_header_id|>\n\nBe brief." in sent.json["prompt"]
    message = result.json()
    assert message["content"] == [{"type": "text", "text": bedrock.reply}]
    assert message["usage"]["input_tokens"] == 17


@pytest.mark.parametrize("stream", [False, True])
def test_claude_on_vertex_gets_the_messages_body_natively(
    world: World, vertex_ai: FakeVertex, sdk_client: RelayClient, stream: bool
) -> None:
    payload = messages_body(VERTEX_CLAUDE, top_k=5, stream=stream)

    result = post(sdk_client, payload)

    assert result.status == 200, result.body
    [sent] = vertex_ai.model_requests
    action = "streamRawPredict" if stream else "rawPredict"
    assert sent.path.endswith(f"/publishers/anthropic/models/{VERTEX_CLAUDE}:{action}")
    expected = {k: v for k, v in payload.items() if k != "model"}
    assert sent.json == {**expected, "anthropic_version": "vertex-2023-10-16"}
    if stream:
        events = events_of(result)
        assert names_of(events)[-1] == "message_stop"
        text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    else:
        text = result.json()["content"][0]["text"]
    assert text == vertex_ai.reply
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (11, 7, VERTEX_CLAUDE)


# ---------------------------------------------------------------------- conversion


def test_openai_channel_gets_a_chat_request_and_the_answer_comes_back_as_a_message(
    world: World, sdk_client: RelayClient
) -> None:
    payload = messages_body(
        GPT,
        system="Be kind.",
        temperature=0.5,
        top_k=3,
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
    )

    result = post(sdk_client, payload)

    assert result.status == 200, result.body
    assert world.upstream.last_request.json == {
        "model": GPT,
        "messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "Hello there"},
        ],
        "max_tokens": 256,
        "temperature": 0.5,
        "stop": ["END"],
        "user": "u-1",
    }
    message = result.json()
    assert message["type"] == "message"
    assert message["role"] == "assistant"
    assert message["model"] == GPT
    assert message["id"].startswith("msg_")
    assert message["content"] == [{"type": "text", "text": world.upstream.reply}]
    assert message["stop_reason"] == "end_turn"
    assert message["stop_sequence"] is None
    assert message["usage"] == {
        "input_tokens": 11,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 7,
    }

    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (11, 7, GPT)
    assert log.channel_id == world.channel.pk
    assert log.quota == quota_for(GPT, ChannelType.OPENAI, 11, 7) == world.user.used_quota


def test_images_become_image_url_parts(world: World, sdk_client: RelayClient) -> None:
    content = [
        {"type": "text", "text": "What is in these?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]

    result = post(sdk_client, messages_body(GPT, messages=[{"role": "user", "content": content}]))

    assert result.status == 200, result.body
    assert world.upstream.last_request.json is not None
    assert world.upstream.last_request.json["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in these?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            ],
        }
    ]


def test_tool_use_and_tool_result_round_trip_through_an_openai_channel(
    world: World, sdk_client: RelayClient
) -> None:
    world.upstream.scenario = "tool_call"
    choice = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}

    first = post(sdk_client, messages_body(GPT, tools=[WEATHER_TOOL], tool_choice=choice))

    sent = world.upstream.last_request.json
    assert sent is not None
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER_TOOL["input_schema"],
                "description": "Current weather in a city",
            },
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    message = first.json()
    assert message["stop_reason"] == "tool_use"
    [call] = message["content"]
    assert call["type"] == "tool_use" and call["name"] == "get_weather"
    assert call["input"] == json.loads(world.upstream.tool_arguments)

    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, call]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": [{"type": "text", "text": "18C"}],
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    world.upstream.scenario = "ok"
    second = post(sdk_client, messages_body(GPT, tools=[WEATHER_TOOL], messages=history))

    assert second.status == 200, second.body
    assert second.json()["content"][0]["text"] == world.upstream.reply
    sent = world.upstream.last_request.json
    assert sent is not None
    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": orjson.dumps(call["input"]).decode(),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "18C"},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_converted_stream_has_anthropics_event_sequence(
    world: World, sdk_client: RelayClient
) -> None:
    result = post(sdk_client, messages_body(GPT, stream=True))

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream"
    events = events_of(result)
    names = names_of(events)
    deltas = names.count("content_block_delta")
    assert deltas >= 2
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == []
    assert start["model"] == GPT
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == world.upstream.reply
    assert events[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2][1]["usage"]["output_tokens"] == 7
    assert events[-2][1]["usage"]["input_tokens"] == 11
    sent = world.upstream.last_request.json
    assert sent is not None
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}

    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.quota == quota_for(GPT, ChannelType.OPENAI, 11, 7) == world.user.used_quota


def test_converted_tool_call_stream(world: World, sdk_client: RelayClient) -> None:
    world.upstream.scenario = "tool_call"

    events = events_of(post(sdk_client, messages_body(GPT, stream=True, tools=[WEATHER_TOOL])))

    names = names_of(events)
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "get_weather"
    assert block["input"] == {}
    fragments = [d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"]
    assert all(d["delta"]["type"] == "input_json_delta" for n, d in events[3:-3])
    assert "".join(fragments) == world.upstream.tool_arguments
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_converted_stream_error_becomes_an_error_event(
    world: World, sdk_client: RelayClient
) -> None:
    world.upstream.scenario = "error_mid_stream"

    events = events_of(post(sdk_client, messages_body(GPT, stream=True)))

    name, data = events[-1]
    assert name == "error"
    assert data["error"]["type"] == "api_error"
    assert "message_stop" not in names_of(events)


def test_stream_without_upstream_usage_counts_the_text(
    world: World, sdk_client: RelayClient
) -> None:
    world.upstream.scenario = "no_usage"

    events = events_of(post(sdk_client, messages_body(GPT, stream=True)))

    assert events[-2][1]["usage"]["output_tokens"] > 0
    world.refresh()
    log = Log.objects.get()
    assert log.completion_tokens == events[-2][1]["usage"]["output_tokens"]


def test_failover_from_a_native_channel_to_a_converting_one(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    set_option("RetryTimes", "1")
    update_channel(claude.pk, {"priority": 10})
    backup = make_channel(base_url=world.upstream.base_url, models=CLAUDE)
    anthropic.scenario = "error_500"

    result = post(sdk_client, messages_body())

    assert result.status == 200, result.body
    assert len(anthropic.requests) == 1
    assert result.json()["content"] == [{"type": "text", "text": world.upstream.reply}]
    assert world.upstream.last_request.json is not None
    assert world.upstream.last_request.json["model"] == CLAUDE
    world.refresh()
    log = Log.objects.get()
    assert log.channel_id == backup.pk
    assert log.quota == quota_for(CLAUDE, ChannelType.OPENAI, 11, 7) == world.user.used_quota


def test_client_disconnect_mid_conversion_bills_the_partial_answer(
    world: World, sdk_client: RelayClient
) -> None:
    world.upstream.scenario = "slow_stream"
    world.upstream.chunk_delay = 0.3
    started = time.monotonic()

    result = sdk_client.post(
        "/v1/messages",
        messages_body(GPT, stream=True),
        headers={"x-api-key": f"sk-{KEY}"},
        disconnect_after_frames=2,
    )

    assert time.monotonic() - started < 2.0
    assert len(result.frames) == 2
    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert 0 < log.completion_tokens < count_text_tokens(world.upstream.reply, GPT)
    assert log.quota == world.user.used_quota
    assert world.runtime.ledger.user_available(world.user.id) == world.user.quota


# ---------------------------------------------------------------------- auth and errors


def test_bearer_authorization_works_too(world: World, claude: Channel) -> None:
    result = world.client.post("/v1/messages", messages_body(), headers=VERSION)

    assert result.status == 200, result.body


def test_bare_path_and_no_version_header(world: World, sdk_client: RelayClient) -> None:
    result = sdk_client.post("/messages", messages_body(GPT), headers={"x-api-key": f"sk-{KEY}"})

    assert result.status == 200, result.body
    assert result.json()["type"] == "message"


@pytest.mark.parametrize("key", ["", "sk-" + "b" * 48])
def test_missing_or_bad_key_is_an_authentication_error(
    world: World, sdk_client: RelayClient, key: str
) -> None:
    result = sdk_client.post("/v1/messages", messages_body(GPT), headers={"x-api-key": key})

    assert result.status == 401
    body = result.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert "(request id: " in body["error"]["message"]
    assert world.upstream.requests == []


def test_key_model_whitelist_is_a_permission_error(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    world.key.models = GPT
    world.key.save()

    result = post(sdk_client, messages_body(CLAUDE))

    assert result.status == 403
    assert result.json()["error"]["type"] == "permission_error"
    assert anthropic.requests == []


def test_no_channel_for_the_model(world: World, sdk_client: RelayClient) -> None:
    result = post(sdk_client, messages_body("claude-nobody-serves"))

    assert result.status == 503
    body = result.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "api_error"
    assert "claude-nobody-serves" in body["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_rate_limit_keeps_its_status_and_costs_nothing(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient, stream: bool
) -> None:
    anthropic.scenario = "error_429"

    result = post(sdk_client, messages_body(stream=stream))

    assert result.status == 429
    assert result.headers["retry-after"] == "2"
    error = result.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert "per-minute rate limit" in error["message"]
    world.refresh()
    assert Log.objects.count() == 0
    assert world.user.used_quota == 0


def test_openai_upstream_rate_limit_is_a_rate_limit_error(
    world: World, sdk_client: RelayClient
) -> None:
    world.upstream.scenario = "error_429"

    result = post(sdk_client, messages_body(GPT))

    assert result.status == 429
    assert result.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "JSON object"),
        (orjson.dumps({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}), "model"),
        (
            orjson.dumps({"model": GPT, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (orjson.dumps({"model": GPT, "max_tokens": 0, "messages": []}), "max_tokens"),
        (orjson.dumps({"model": GPT, "max_tokens": 5, "messages": []}), "messages"),
    ],
)
def test_bad_bodies_are_invalid_request_errors(
    world: World, sdk_client: RelayClient, body: bytes, message: str
) -> None:
    result = sdk_client.post(
        "/v1/messages", body=body, headers={"x-api-key": f"sk-{KEY}", **VERSION}
    )

    assert result.status == 400
    error = result.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert message in error["message"]
    assert world.upstream.requests == []


def test_blocks_an_openai_channel_cannot_take_are_refused(
    world: World, sdk_client: RelayClient
) -> None:
    document = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
    }
    messages = [{"role": "user", "content": [document]}]

    result = post(sdk_client, messages_body(GPT, messages=messages))

    assert result.status == 400
    assert result.json()["error"]["type"] == "invalid_request_error"
    assert "document" in result.json()["error"]["message"]
    assert world.upstream.requests == []


# ---------------------------------------------------------------------- count_tokens


def test_count_tokens_counts_locally_and_charges_nothing(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    short = post(sdk_client, messages_body(), path="/v1/messages/count_tokens")
    longer = post(
        sdk_client,
        {
            "model": CLAUDE,
            "system": "You are a weather bot.",
            "tools": [WEATHER_TOOL],
            "messages": [{"role": "user", "content": "Hello there, how is the weather?"}],
        },
        path="/v1/messages/count_tokens",
    )

    assert short.status == 200, short.body
    assert short.json() == {"input_tokens": 3 + 2 + 1 + 3}  # per message, text, role, priming
    assert longer.json()["input_tokens"] > short.json()["input_tokens"] + 20
    assert anthropic.requests == []
    world.refresh()
    assert Log.objects.count() == 0
    assert world.user.used_quota == 0


def test_url_images_are_fetched_and_counted_like_a_chat_requests(
    world: World, claude: Channel, anthropic: FakeAnthropic, sdk_client: RelayClient
) -> None:
    def body(*urls: str) -> dict[str, Any]:
        images = [{"type": "image", "source": {"type": "url", "url": url}} for url in urls]
        content = [{"type": "text", "text": "What is in the picture?"}, *images]
        return messages_body(messages=[{"role": "user", "content": content}])

    with FakeImageHost() as host, override_settings(IMAGE_FETCH_ALLOW_PRIVATE=True):
        plain, with_image, with_missing = (
            post(sdk_client, payload, path="/v1/messages/count_tokens").json()["input_tokens"]
            for payload in (
                body(),
                body(f"{host.base_url}/png/1024x1024.png"),
                body(f"{host.base_url}/missing"),
            )
        )
        fetched = [request.path for request in host.requests]

    assert with_image - plain == image_tokens(1024, 1024, "high", CLAUDE) == 765
    assert with_missing == plain  # an image that cannot be fetched counts nothing
    assert fetched == ["/png/1024x1024.png", "/missing"]


def test_an_image_url_that_is_not_a_string_is_no_image() -> None:
    block = {"type": "image", "source": {"type": "url", "url": {"href": "http://x/a.png"}}}
    assert convert.image_part(block, strict=False) is None
    with pytest.raises(RelayError, match="image source type 'url'"):
        convert.image_part(block, strict=True)


def test_count_tokens_checks_the_key(world: World, sdk_client: RelayClient) -> None:
    result = sdk_client.post(
        "/v1/messages/count_tokens", messages_body(), headers={"x-api-key": "sk-wrong"}
    )

    assert result.status == 401
    assert result.json()["error"]["type"] == "authentication_error"


# ---------------------------------------------------------------------- pure conversions


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, stop: str) -> None:
    completion = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}

    assert convert.to_anthropic_message(completion, GPT)["stop_reason"] == stop


def test_cached_prompt_tokens_are_reported_apart() -> None:
    usage = {
        "prompt_tokens": 120,
        "completion_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 100},
    }

    assert convert.anthropic_usage(usage) == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 100,
        "output_tokens": 5,
    }


def test_reasoning_is_a_thinking_block_only_when_the_client_asked() -> None:
    completion = {
        "choices": [{"message": {"content": "4", "reasoning_content": "2+2"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }

    plain = convert.to_anthropic_message(completion, GPT)
    thinking = convert.to_anthropic_message(completion, GPT, thinking=True)

    assert plain["content"] == [{"type": "text", "text": "4"}]
    assert thinking["content"] == [
        {"type": "thinking", "thinking": "2+2", "signature": ""},
        {"type": "text", "text": "4"},
    ]


def chunk_events(lines: list[dict[str, Any] | str], **options: Any) -> list[dict[str, Any]]:
    converter = convert.ChunkEvents(model=GPT, prompt_tokens=5, **options)
    out = b""
    for line in lines:
        data = line if isinstance(line, str) else orjson.dumps(line).decode()
        out += converter.accept(f"data: {data}".encode()) or b""
    splitter = LineSplitter()
    return [orjson.loads(line[6:]) for line in splitter.feed(out) if line.startswith(b"data: ")]


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "chatcmpl-1", "model": GPT, "choices": [choice]}


def tool_chunk(index: int, arguments: str, name: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name is not None:  # the head of a call: its id and name
        entry["id"] = f"c{index + 1}"
        entry["function"]["name"] = name
    return chunk({"tool_calls": [entry]})


def test_chunks_with_thinking_text_and_two_tools() -> None:
    lines: list[dict[str, Any] | str] = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "hmm"}),
        chunk({"content": "Hi"}),
        tool_chunk(0, "", "a"),
        tool_chunk(0, "{}"),
        tool_chunk(1, "{", "b"),
        tool_chunk(1, "}"),
        chunk({}, "tool_calls"),
        {"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
        "[DONE]",
    ]

    events = chunk_events(lines, thinking=True)

    summary = [
        (e["type"], e.get("index"), (e.get("content_block") or e.get("delta") or {}).get("type"))
        for e in events
    ]
    assert summary == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("ping", None, None),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert events[0]["message"]["id"] == "msg_1"
    assert events[0]["message"]["usage"]["input_tokens"] == 5
    assert events[8]["content_block"] == {"type": "tool_use", "id": "c1", "name": "a", "input": {}}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert events[-2]["usage"]["input_tokens"] == 9
    assert events[-2]["usage"]["output_tokens"] == 4


def test_chunks_without_thinking_drop_the_reasoning() -> None:
    events = chunk_events([chunk({"reasoning_content": "hmm"}), chunk({"content": "Hi"}), "[DONE]"])

    assert [e["type"] for e in events][:3] == ["message_start", "content_block_start", "ping"]
    assert events[1]["content_block"]["type"] == "text"


def test_an_empty_answer_still_has_one_text_block() -> None:
    events = chunk_events(["[DONE]"])

    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_message_events_replay_a_whole_message() -> None:
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 4},
    }

    out = convert.message_events(message)

    events = [orjson.loads(line[6:]) for line in out.split(b"\n") if line.startswith(b"data: ")]
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[6]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":1}'}
    assert events[-2]["usage"] == {"input_tokens": 3, "output_tokens": 4}
