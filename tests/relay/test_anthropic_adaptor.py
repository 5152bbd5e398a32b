"""The Anthropic adaptor: conversions in isolation, then the relay against a fake Claude."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from relay.adaptors import adaptor_for
from relay.adaptors.anthropic import AnthropicAdaptor, AnthropicStream
from relay.adaptors.base import Attempt, OpenAIBody
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.http import Request
from relay.modes import RelayMode
from tests.factories import make_channel
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.relay.conftest import World

MODEL = "claude-3-5-sonnet-20241022"
KEY = "sk-ant-test"
ADAPTOR = AnthropicAdaptor()
PNG_DATA = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


def make_attempt(
    *,
    mode: RelayMode = RelayMode.CHAT,
    stream: bool = False,
    base_url: str = "",
    headers: dict[str, str] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=ChannelType.ANTHROPIC,
        name="claude",
        key=KEY,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(MODEL,),
        model_mapping={},
        config={},
        system_prompt="",
        other="",
    )
    request = Request(
        method="POST",
        path=mode.upstream_path,
        query_string=b"",
        headers=headers or {},
        body=b"",
        client_ip="127.0.0.1",
        request_id="test-request",
    )
    return Attempt(channel, mode, MODEL, stream, request)


def upstream_body(payload: dict[str, Any]) -> dict[str, Any]:
    body = OpenAIBody(orjson.dumps(payload), dict(payload))
    return orjson.loads(ADAPTOR.build_request(make_attempt(), body).content)


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def translate(message: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(ADAPTOR.translate_response(make_attempt(), orjson.dumps(message)))


def anthropic_message(content: list[dict[str, Any]], stop_reason: str = "end_turn") -> dict:
    return {
        "id": "msg_01abc",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 8},
    }


# ---------------------------------------------------------------------- requests


def test_request_gets_a_default_max_tokens_and_the_shared_parameters() -> None:
    sent = upstream_body(
        chat(user("Hi"), temperature=0.3, top_p=0.9, top_k=40, stream=True, user="u-7")
    )

    assert sent == {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 40,
        "metadata": {"user_id": "u-7"},
        "stream": True,
    }


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_the_clients_max_tokens_is_kept(field: str) -> None:
    assert upstream_body(chat(user("Hi"), **{field: 77}))["max_tokens"] == 77


def test_openai_only_fields_are_not_sent() -> None:
    payload = chat(user("Hi"), stream_options={"include_usage": True}, n=1, seed=3)
    sent = upstream_body(payload)
    assert not {"stream_options", "n", "seed"} & set(sent)


def test_system_and_developer_messages_become_the_system_prompt() -> None:
    single = upstream_body(chat({"role": "system", "content": "Be brief."}, user("Hi")))
    assert single["system"] == "Be brief."
    assert single["messages"] == [{"role": "user", "content": "Hi"}]

    several = upstream_body(
        chat(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            user("Hi"),
        )
    )
    assert several["system"] == [
        {"type": "text", "text": "Be brief."},
        {"type": "text", "text": "Use French."},
    ]


def test_images_from_data_urls_and_http_urls() -> None:
    content = [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]

    sent = upstream_body(chat(user(content)))

    assert sent["messages"][0]["content"] == [
        {"type": "text", "text": "Compare these"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_content_anthropic_cannot_take_is_a_client_error(part: dict[str, Any]) -> None:
    with pytest.raises(RelayError) as caught:
        upstream_body(chat(user([part])))
    assert caught.value.status == 400


def test_tools_become_input_schemas() -> None:
    sent = upstream_body(chat(user("Weather?"), tools=[WEATHER_TOOL]))

    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert "tool_choice" not in sent


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    sent = upstream_body(chat(user("Weather?"), tools=[WEATHER_TOOL], tool_choice=choice))
    assert sent["tool_choice"] == expected


def test_parallel_tool_calls_off_disables_parallel_tool_use() -> None:
    sent = upstream_body(chat(user("Weather?"), tools=[WEATHER_TOOL], parallel_tool_calls=False))
    assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_tool_calls_and_tool_results_become_tool_use_and_tool_result_blocks() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Rome"}'},
        },
    ]
    messages = [
        user("Weather in Paris and Rome?"),
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "24C"}]},
        user("And tomorrow?"),
    ]

    sent = upstream_body(chat(*messages, tools=[WEATHER_TOOL]))

    assert sent["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather",
                 "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather",
                 "input": {"location": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                {"type": "tool_result", "tool_use_id": "call_2",
                 "content": [{"type": "text", "text": "24C"}]},
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]  # fmt: skip


def test_consecutive_messages_of_one_role_are_merged_and_empty_ones_dropped() -> None:
    sent = upstream_body(
        chat(
            user("First"),
            user([{"type": "text", "text": "Second"}]),
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "Answer"},
            user("Third"),
        )
    )

    assert sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "First"}, {"type": "text", "text": "Second"}],
        },
        {"role": "assistant", "content": "Answer"},
        {"role": "user", "content": "Third"},
    ]


@pytest.mark.parametrize(
    ("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"]), (None, None)]
)
def test_stop_becomes_stop_sequences(stop: Any, expected: list[str] | None) -> None:
    sent = upstream_body(chat(user("Hi"), stop=stop))
    assert sent.get("stop_sequences") == expected


@pytest.mark.parametrize(
    ("base_url", "url"),
    [
        ("", "https://api.anthropic.com/v1/messages"),
        ("https://claude.example/", "https://claude.example/v1/messages"),
        ("https://claude.example/v1", "https://claude.example/v1/messages"),
    ],
)
def test_url_and_headers(base_url: str, url: str) -> None:
    attempt = make_attempt(
        base_url=base_url, headers={"anthropic-beta": "prompt-caching-2024-07-31"}
    )
    body = OpenAIBody(b"{}", chat(user("Hi")))

    call = ADAPTOR.build_request(attempt, body)

    assert (call.method, call.url) == ("POST", url)
    assert call.headers["x-api-key"] == KEY
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert call.headers["content-type"] == "application/json"
    assert call.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert "authorization" not in {name.lower() for name in call.headers}


def test_no_beta_header_unless_the_client_sent_one() -> None:
    call = ADAPTOR.build_request(make_attempt(), OpenAIBody(b"{}", chat(user("Hi"))))
    assert "anthropic-beta" not in call.headers


def test_other_modes_and_multipart_are_refused() -> None:
    body = OpenAIBody(b"{}", {"model": MODEL, "input": "x"})
    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_request(make_attempt(mode=RelayMode.EMBEDDINGS), body)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")
    assert "Anthropic" in caught.value.message

    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_raw_request(
            make_attempt(mode=RelayMode.AUDIO_TRANSCRIPTION), b"", "multipart/form-data"
        )
    assert caught.value.status == 400
    assert "not supported by this channel type" in caught.value.message


def test_anthropic_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.ANTHROPIC), AnthropicAdaptor)


# ---------------------------------------------------------------------- responses


def test_text_response_and_usage_with_cache_tokens() -> None:
    message = anthropic_message([{"type": "text", "text": "Hello"}, {"type": "text", "text": "!"}])
    message["usage"] = {
        "input_tokens": 20,
        "cache_creation_input_tokens": 5,
        "cache_read_input_tokens": 100,
        "output_tokens": 8,
    }

    result = translate(message)

    assert result["id"] == "chatcmpl-msg_01abc"
    assert result["object"] == "chat.completion"
    assert result["model"] == MODEL
    choice = result["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello!"}
    assert choice["finish_reason"] == "stop"
    assert result["usage"]["prompt_tokens"] == 125
    assert result["usage"]["completion_tokens"] == 8
    assert result["usage"]["total_tokens"] == 133


def test_tool_use_response_becomes_tool_calls() -> None:
    message = anthropic_message(
        [
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
             "input": {"location": "Paris"}},
        ],
        stop_reason="tool_use",
    )  # fmt: skip

    choice = translate(message)["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_1"
    assert call["type"] == "function"
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == {"location": "Paris"}


def test_thinking_blocks_become_reasoning_content() -> None:
    message = anthropic_message(
        [
            {"type": "thinking", "thinking": "Greet back.", "signature": "sig"},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "text", "text": "Hi!"},
        ]
    )

    assert translate(message)["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hi!",
        "reasoning_content": "Greet back.",
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    message = anthropic_message([{"type": "text", "text": "x"}], stop_reason=stop_reason)
    assert translate(message)["choices"][0]["finish_reason"] == finish


# ---------------------------------------------------------------------- stream translation


def sse_lines(event: dict[str, Any]) -> list[bytes]:
    return [f"event: {event['type']}".encode(), b"data: " + orjson.dumps(event), b""]


def decode_frames(raw: bytes) -> list[Any]:
    frames: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: "), block
            payload = block[6:]
            frames.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return frames


def feed(translator: AnthropicStream, *events: dict[str, Any]) -> list[Any]:
    raw = b""
    for event in events:
        for line in sse_lines(event):
            raw += translator.accept(line) or b""
    return decode_frames(raw)


def message_start(input_tokens: int = 25, **usage: int) -> dict[str, Any]:
    message = {
        "id": "msg_01stream",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
    }
    return {"type": "message_start", "message": message}


def block_start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str, output_tokens: int) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": output_tokens},
    }


MESSAGE_STOP = {"type": "message_stop"}
PING = {"type": "ping"}


def deltas(frames: list[Any]) -> list[dict[str, Any]]:
    return [f["choices"][0]["delta"] for f in frames if f != "[DONE]" and f["choices"]]


def test_text_stream_event_by_event() -> None:
    translator = AnthropicStream(client_wants_usage=False, model=MODEL)

    first = feed(translator, message_start())
    assert first[0]["object"] == "chat.completion.chunk"
    assert first[0]["id"] == "chatcmpl-msg_01stream"
    assert deltas(first) == [{"role": "assistant", "content": ""}]
    assert feed(translator, block_start(0, {"type": "text", "text": ""}), PING) == []
    hello = feed(translator, block_delta(0, {"type": "text_delta", "text": "Hello"}))
    assert deltas(hello) == [{"content": "Hello"}]
    assert hello[0]["id"] == first[0]["id"]
    feed(translator, block_delta(0, {"type": "text_delta", "text": " there"}))
    assert feed(translator, block_stop(0)) == []
    assert translator.usage is None  # not before Anthropic's final count

    final = feed(translator, message_delta("end_turn", 15))
    assert final[0]["choices"][0]["finish_reason"] == "stop"
    assert final[0]["choices"][0]["delta"] == {}
    assert translator.usage == {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40}
    assert not translator.saw_done

    assert feed(translator, MESSAGE_STOP) == ["[DONE]"]  # no usage chunk: not asked for
    assert translator.saw_done
    assert translator.upstream_error is None
    assert translator.generated_text == "Hello there"


def test_usage_chunk_only_when_the_client_asked_and_with_cache_tokens() -> None:
    translator = AnthropicStream(client_wants_usage=True, model=MODEL)
    feed(
        translator,
        message_start(10, cache_read_input_tokens=30, cache_creation_input_tokens=2),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Hi"}),
        block_stop(0),
        message_delta("max_tokens", 4),
    )

    last = feed(translator, MESSAGE_STOP)

    assert last[-1] == "[DONE]"
    assert last[0]["choices"] == []
    assert last[0]["usage"]["prompt_tokens"] == 42
    assert last[0]["usage"]["completion_tokens"] == 4
    assert last[0]["usage"]["total_tokens"] == 46


def test_tool_use_stream_gives_a_head_then_argument_fragments() -> None:
    translator = AnthropicStream(client_wants_usage=False, model=MODEL)
    frames = feed(
        translator,
        message_start(),
        block_start(0, {"type": "text", "text": ""}),
        block_delta(0, {"type": "text_delta", "text": "Checking."}),
        block_stop(0),
        block_start(1, {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}),
        block_delta(1, {"type": "input_json_delta", "partial_json": ""}),
        block_delta(1, {"type": "input_json_delta", "partial_json": '{"location":'}),
        block_delta(1, {"type": "input_json_delta", "partial_json": ' "Paris"}'}),
        block_stop(1),
        block_start(2, {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}),
        block_delta(2, {"type": "input_json_delta", "partial_json": "{}"}),
        block_stop(2),
        message_delta("tool_use", 30),
        MESSAGE_STOP,
    )

    assert deltas(frames)[1:-1] == [
        {"content": "Checking."},
        {"tool_calls": [{"index": 0, "id": "toolu_a", "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]},
        {"tool_calls": [{"index": 1, "id": "toolu_b", "type": "function",
                         "function": {"name": "get_time", "arguments": ""}}]},
        {"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]},
    ]  # fmt: skip
    assert frames[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert frames[-1] == "[DONE]"
    assert translator.generated_text == 'Checking.get_weather{"location": "Paris"}get_time{}'


def test_thinking_stream_becomes_reasoning_content() -> None:
    translator = AnthropicStream(client_wants_usage=False, model=MODEL)
    frames = feed(
        translator,
        message_start(),
        block_start(0, {"type": "thinking", "thinking": ""}),
        block_delta(0, {"type": "thinking_delta", "thinking": "Let me think."}),
        block_delta(0, {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}),
        block_stop(0),
        block_start(1, {"type": "text", "text": ""}),
        block_delta(1, {"type": "text_delta", "text": "Done."}),
        block_stop(1),
        message_delta("end_turn", 12),
        MESSAGE_STOP,
    )

    assert deltas(frames)[1:-1] == [{"reasoning_content": "Let me think."}, {"content": "Done."}]
    assert translator.generated_text == "Let me think.Done."


def test_error_event_becomes_an_openai_error_frame() -> None:
    translator = AnthropicStream(client_wants_usage=False, model=MODEL)
    feed(translator, message_start(), block_start(0, {"type": "text", "text": ""}))

    frames = feed(
        translator,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )

    assert frames == [
        {
            "error": {
                "message": "Overloaded",
                "type": "overloaded_error",
                "param": None,
                "code": None,
            }
        }
    ]
    assert translator.upstream_error is not None
    assert translator.upstream_error["type"] == "overloaded_error"
    assert not translator.saw_done


def test_lines_without_data_and_unknown_events_are_dropped() -> None:
    translator = AnthropicStream(client_wants_usage=False, model=MODEL)
    for line in (b"event: ping", b"", b": comment", b"data: not json", b'data: {"type":"x"}'):
        assert translator.accept(line) is None


def test_message_stop_without_message_delta_still_finishes() -> None:
    translator = AnthropicStream(client_wants_usage=True, model=MODEL)
    frames = feed(translator, message_start(), MESSAGE_STOP)
    assert frames[-2]["choices"][0]["finish_reason"] == "stop"
    assert frames[-1] == "[DONE]"
    assert translator.usage is None  # no final count: the relay counts the text itself


# ---------------------------------------------------------------------- the fake upstream


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as fake:
        yield fake


def post_fake(
    fake: FakeAnthropic, payload: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    sent = {"x-api-key": KEY, "anthropic-version": "2023-06-01", **(headers or {})}
    return httpx.post(f"{fake.base_url}/v1/messages", json=payload, headers=sent)


GOOD = {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    ("headers", "payload", "status", "message"),
    [
        ({"x-api-key": "wrong"}, GOOD, 401, "invalid x-api-key"),
        ({"anthropic-version": ""}, GOOD, 400, "anthropic-version"),
        ({}, {**GOOD, "max_tokens": None}, 400, "max_tokens: Field required"),
        (
            {},
            {**GOOD, "messages": [{"role": "user", "content": "a"}] * 2},
            400,
            "roles must alternate",
        ),
        (
            {},
            {
                **GOOD,
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x"}]}
                ],
            },
            400,
            "tool_use_id",
        ),
    ],
)
def test_the_fake_is_as_strict_as_anthropic(
    anthropic: FakeAnthropic,
    headers: dict[str, str],
    payload: dict[str, Any],
    status: int,
    message: str,
) -> None:
    payload = {k: v for k, v in payload.items() if v is not None}
    response = post_fake(anthropic, payload, headers)
    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error"
    assert message in body["error"]["message"]


def test_the_fake_streams_every_event_type(anthropic: FakeAnthropic) -> None:
    anthropic.scenario = "thinking"
    payload = {**GOOD, "stream": True, "tools": [{"name": "f", "input_schema": {}}]}
    response = post_fake(anthropic, payload)
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert {"ping", "content_block_start", "content_block_delta", "content_block_stop"} <= set(
        names
    )
    assert '"thinking_delta"' in response.text
    assert '"input_json_delta"' in response.text


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def claude(world: World, anthropic: FakeAnthropic) -> Channel:
    return make_channel(
        type=ChannelType.ANTHROPIC, base_url=anthropic.base_url, key=KEY, models=MODEL
    )


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}


def expected_quota(prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(MODEL, ChannelType.ANTHROPIC)
    completion_ratio = pricing.completion_ratio(MODEL, ChannelType.ANTHROPIC)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_chat_is_converted_both_ways_and_billed_from_anthropic_usage(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    payload = {**CHAT, "messages": [{"role": "system", "content": "Be kind."}, *CHAT["messages"]]}

    result = world.client.post(
        "/v1/chat/completions", payload, headers={"anthropic-beta": "tools-2024-04-04"}
    )

    assert result.status == 200, result.body
    sent = anthropic.last_request
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "tools-2024-04-04"
    assert sent.json is not None
    assert sent.json["max_tokens"] == 4096  # the client gave none; Anthropic requires one
    assert sent.json["system"] == "Be kind."
    assert sent.json["messages"] == [{"role": "user", "content": "Hello there"}]
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == anthropic.reply
    assert body["usage"] == {"prompt_tokens": 13, "completion_tokens": 9, "total_tokens": 22}
    assert world.upstream.requests == []  # the OpenAI channel was never involved

    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (13, 9)
    assert log.model_name == MODEL
    assert log.channel_id == claude.pk
    assert log.quota == expected_quota(13, 9) == world.user.used_quota


def test_stream_is_converted_and_billed_from_anthropic_usage(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream"
    events = result.events
    assert events[-1] == "[DONE]"
    assert result.body.count(b"[DONE]") == 1
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["choices"] for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == anthropic.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert anthropic.last_request.json is not None
    assert anthropic.last_request.json["stream"] is True
    assert "stream_options" not in anthropic.last_request.json

    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert (log.prompt_tokens, log.completion_tokens) == (13, 9)
    assert log.quota == expected_quota(13, 9) == world.user.used_quota


def test_stream_usage_chunk_when_the_client_asks(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    anthropic.cache_read_input_tokens = 100
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

    events = world.client.post("/v1/chat/completions", payload).events

    usage_chunks = [e for e in events if e != "[DONE]" and e.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"]["prompt_tokens"] == 113
    world.refresh()
    assert Log.objects.get().prompt_tokens == 113


def test_tool_round_trip_through_the_relay(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    ask = {**CHAT, "tools": [WEATHER_TOOL], "tool_choice": "required"}
    first = world.client.post("/v1/chat/completions", ask)

    assert first.status == 200, first.body
    assert anthropic.last_request.json is not None
    assert anthropic.last_request.json["tool_choice"] == {"type": "any"}
    message = first.json()["choices"][0]["message"]
    assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] == anthropic.tool_preamble
    call = message["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == anthropic.tool_input

    # The fake refuses a tool_result that does not answer the previous turn's tool_use.
    answer = {
        **ask,
        "messages": [
            *CHAT["messages"],
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
        ],
    }
    second = world.client.post("/v1/chat/completions", answer)

    assert second.status == 200, second.body
    assert second.json()["choices"][0]["message"]["content"] == anthropic.reply


def test_tool_call_stream_through_the_relay(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    events = world.client.post(
        "/v1/chat/completions", {**CHAT, "tools": [WEATHER_TOOL], "stream": True}
    ).events

    calls = [call for e in events[:-1] for call in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls[0]["id"].startswith("toolu_")
    assert calls[0]["function"]["name"] == "get_weather"
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert orjson.loads(arguments) == anthropic.tool_input
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_thinking_through_the_relay(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    anthropic.scenario = "thinking"

    plain = world.client.post("/v1/chat/completions", CHAT).json()
    streamed = world.client.post("/v1/chat/completions", {**CHAT, "stream": True}).events

    assert plain["choices"][0]["message"]["reasoning_content"] == anthropic.thinking
    reasoning = "".join(
        e["choices"][0]["delta"].get("reasoning_content") or "" for e in streamed[:-1]
    )
    assert reasoning == anthropic.thinking


def test_stop_sequence_through_the_relay(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stop": " fake"}).json()

    assert anthropic.last_request.json is not None
    assert anthropic.last_request.json["stop_sequences"] == [" fake"]
    assert result["choices"][0]["message"]["content"] == "Hello from"
    assert result["choices"][0]["finish_reason"] == "stop"


def test_rate_limit_keeps_status_429(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    anthropic.scenario = "error_429"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 429
    error = result.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert "per-minute rate limit" in error["message"]
    world.refresh()
    assert Log.objects.count() == 0
    assert world.user.used_quota == 0


def test_overloaded_keeps_status_529(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    anthropic.scenario = "error_529"

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 529
    assert result.json()["error"]["type"] == "overloaded_error"


def test_wrong_key_is_an_authentication_error(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    anthropic.api_key = "sk-ant-other"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 401
    assert result.json()["error"]["type"] == "authentication_error"


def test_error_event_mid_stream_reaches_the_client(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    anthropic.scenario = "error_mid_stream"

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    events = result.events
    assert events[-1]["error"]["type"] == "overloaded_error"
    assert "[DONE]" not in events
    world.refresh()
    assert Log.objects.get().completion_tokens > 0  # billed for what was generated


def test_other_modes_are_refused_for_anthropic_channels(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    result = world.client.post("/v1/embeddings", {"model": MODEL, "input": "Hello"})

    assert result.status == 400
    assert result.json()["error"]["code"] == "unsupported_mode"
    assert anthropic.requests == []


def test_non_stream_billing_counts_cache_tokens(
    world: World, claude: Channel, anthropic: FakeAnthropic
) -> None:
    anthropic.cache_read_input_tokens = 100

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.json()["usage"]["prompt_tokens"] == 113
    world.refresh()
    assert Log.objects.get().prompt_tokens == 113


def test_temperature_above_anthropics_range_is_clamped() -> None:
    from relay.adaptors.anthropic import convert_request

    payload = {
        "model": "claude-3-5-sonnet-20241022",
        "temperature": 1.7,
        "messages": [{"role": "user", "content": "x"}],
    }
    assert convert_request(payload, "claude-3-5-sonnet-20241022")["temperature"] == 1
