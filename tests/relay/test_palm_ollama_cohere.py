"""The PaLM, Ollama and Cohere adaptors: conversions on fixtures in each provider's wire
format, then the relay against a fake of each."""

from __future__ import annotations

import json
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
from relay.adaptors import adaptor_for, cohere, ollama, palm
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from relay.tokens import cl100k_base
from tests.factories import make_channel
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.gemini_upstream import gemini_vector
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.palm_upstream import FakePaLM
from tests.relay.conftest import World

PNG = (
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
            "properties": {
                "location": {"type": "string", "description": "The city"},
                "days": {"type": "integer"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["location"],
        },
    },
}


def make_attempt(
    channel_type: int,
    model: str,
    *,
    mode: RelayMode = RelayMode.CHAT,
    stream: bool = False,
    key: str = "key",
    base_url: str = "",
    client_body: dict[str, Any] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=channel_type,
        name="test",
        key=key,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(model,),
        model_mapping={},
        config={},
        system_prompt="",
        other="",
    )
    request = Request(
        method="POST",
        path=mode.upstream_path,
        query_string=b"",
        headers={},
        body=orjson.dumps(client_body or {}),
        client_ip="127.0.0.1",
        request_id="test-request",
    )
    return Attempt(channel, mode, model, stream, request)


def build(adaptor: Adaptor, attempt: Attempt, payload: dict[str, Any]) -> Any:
    return adaptor.build_request(attempt, OpenAIBody(orjson.dumps(payload), dict(payload)))


def frames(raw: bytes | None) -> list[Any]:
    out: list[Any] = []
    for block in (raw or b"").split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[6:]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def image(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


def expected_quota(prompt: int, completion: int, model: str, channel_type: int) -> int:
    ratio = pricing.model_ratio(model, channel_type)
    completion_ratio = pricing.completion_ratio(model, channel_type)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


# ====================================================================== PaLM

PALM = palm.PaLMAdaptor()


def palm_body(payload: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    call = build(PALM, make_attempt(ChannelType.PALM, "PaLM-2", **attempt), payload)
    return orjson.loads(call.content)


def test_palm_request_has_context_alternating_authors_and_clamped_sampling() -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            user("Hi"),
            user([{"type": "text", "text": "there"}]),
            {"role": "assistant", "content": "Hello!"},
            {"role": "assistant", "content": ""},
            user("Weather?"),
        ],
        "temperature": 1.7,
        "top_p": 0.9,
        "top_k": 40,
        "n": 12,
        "max_tokens": 100,
        "stop": ["x"],
    }
    assert palm_body(payload) == {
        "prompt": {
            "context": "Be brief.",
            "messages": [
                {"author": "0", "content": "Hi\nthere"},
                {"author": "1", "content": "Hello!"},
                {"author": "0", "content": "Weather?"},
            ],
        },
        "temperature": 1.0,
        "topP": 0.9,
        "topK": 40,
        "candidateCount": 8,
    }


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"messages": [user([image(f"data:image/png;base64,{PNG}")])]}, "unsupported_content"),
        ({"messages": [user("x")], "tools": [WEATHER_TOOL]}, "unsupported_mode"),
        ({"messages": [{"role": "tool", "tool_call_id": "c", "content": "x"}]}, "unsupported_mode"),
    ],
)
def test_palm_refuses_what_it_cannot_do(payload: dict[str, Any], code: str) -> None:
    with pytest.raises(RelayError) as caught:
        palm_body(payload)
    assert (caught.value.status, caught.value.code) == (400, code)


def test_palm_url_and_headers() -> None:
    attempt = make_attempt(
        ChannelType.PALM, "PaLM-2", key="pk", base_url="https://g.example/v1beta2/"
    )
    call = build(PALM, attempt, {"messages": [user("Hi")]})
    assert call.url == "https://g.example/v1beta2/models/chat-bison-001:generateMessage"
    assert call.headers["x-goog-api-key"] == "pk"
    default = build(PALM, make_attempt(ChannelType.PALM, "chat-bison-001"), {"messages": []})
    assert default.url == (
        "https://generativelanguage.googleapis.com/v1beta2/models/chat-bison-001:generateMessage"
    )
    with pytest.raises(RelayError):
        build(PALM, make_attempt(ChannelType.PALM, "PaLM-2", mode=RelayMode.EMBEDDINGS), {})


PALM_ANSWER = {
    "candidates": [
        {"author": "1", "content": "Hello! How can I help?"},
        {"author": "1", "content": "Hi there."},
    ],
    "messages": [{"author": "0", "content": "Hi"}],
}


def test_palm_candidates_become_choices_without_made_up_usage() -> None:
    result = palm.convert_response(PALM_ANSWER, "PaLM-2")
    assert [c["message"]["content"] for c in result["choices"]] == [
        "Hello! How can I help?",
        "Hi there.",
    ]
    assert {c["finish_reason"] for c in result["choices"]} == {"stop"}
    assert result["object"] == "chat.completion" and result["model"] == "PaLM-2"
    assert "usage" not in result  # PaLM counts nothing: the relay does


def test_a_filtered_palm_answer_is_content_filtered() -> None:
    result = palm.convert_response({"filters": [{"reason": "OTHER"}], "messages": []}, "PaLM-2")
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]


def test_palm_json_becomes_stream_frames() -> None:
    events = frames(palm.json_to_stream_frames(PALM_ANSWER, client_wants_usage=True))

    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    first = [c for c in chunks if c["choices"][0]["index"] == 0]
    assert first[0]["choices"][0]["delta"] == {"role": "assistant", "content": PALM_ANSWER[
        "candidates"][0]["content"]}  # fmt: skip
    assert first[1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert not any("usage" in c for c in chunks)  # nothing counted upstream, nothing made up


def test_palm_stream_translator_collects_a_pretty_printed_body() -> None:
    translator = palm.PaLMAdaptor().stream_translator(
        make_attempt(ChannelType.PALM, "PaLM-2", stream=True), False
    )
    lines = json.dumps(PALM_ANSWER, indent=2).encode().split(b"\n")
    outputs = [translator.accept(line) for line in lines]
    assert outputs[:-1] == [None] * (len(lines) - 1)
    events = frames(outputs[-1])
    assert events[-1] == "[DONE]"
    assert translator.saw_done
    assert translator.generated_text == "Hello! How can I help?Hi there."
    assert translator.accept(b"{}") is None


def test_palm_adaptor_declares_its_fake_stream() -> None:
    assert isinstance(adaptor_for(ChannelType.PALM), palm.PaLMAdaptor)
    assert palm.PaLMAdaptor.fake_stream is True


# ====================================================================== Ollama

OLLAMA = ollama.OllamaAdaptor()


def ollama_call(payload: dict[str, Any], model: str = "llama3:latest", **attempt: Any) -> Any:
    return build(OLLAMA, make_attempt(ChannelType.OLLAMA, model, **attempt), payload)


def test_ollama_request_messages_images_and_options() -> None:
    payload = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            user(
                [
                    {"type": "text", "text": "What is "},
                    {"type": "text", "text": "this?"},
                    image(f"data:image/png;base64,{PNG}"),
                ]
            ),
        ],
        "temperature": 0.5,
        "top_p": 1.5,
        "max_completion_tokens": 64,
        "seed": 42,
        "stop": "END",
        "frequency_penalty": 0.2,
        "presence_penalty": 0.1,
        "num_ctx": 4096,
    }
    call = ollama_call(payload)
    assert call.url == "http://localhost:11434/api/chat"
    assert orjson.loads(call.content) == {
        "model": "llama3:latest",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is this?", "images": [PNG]},
        ],
        "stream": False,
        "options": {
            "temperature": 0.5,
            "top_p": 1.0,
            "seed": 42,
            "frequency_penalty": 0.2,
            "presence_penalty": 0.1,
            "num_ctx": 4096,
            "num_predict": 64,
            "stop": ["END"],
        },
    }
    assert "authorization" in call.headers  # a key is forwarded for a proxy in front
    keyless = ollama_call({"messages": [user("x")]}, key="", base_url="http://o:1/v1")
    assert "authorization" not in keyless.headers
    assert keyless.url == "http://o:1/api/chat"


def test_ollama_streams_only_when_asked() -> None:
    streamed = orjson.loads(ollama_call({"messages": [user("x")]}, stream=True).content)
    assert streamed["stream"] is True
    assert ollama_call({"messages": [user("x")]}, stream=True).headers["accept"] == (
        "application/x-ndjson"
    )


def test_ollama_refuses_remote_images_instead_of_fetching_them() -> None:
    with pytest.raises(RelayError) as caught:
        ollama_call({"messages": [user([image("http://169.254.169.254/latest/meta-data")])]})
    assert (caught.value.status, caught.value.code) == (400, "invalid_image_url")
    assert "not fetched" in caught.value.message


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": [user("x")], "n": 2},
        {"messages": [user([{"type": "input_audio", "input_audio": {"data": "x"}}])]},
    ],
)
def test_ollama_refuses_what_it_cannot_do(payload: dict[str, Any]) -> None:
    with pytest.raises(RelayError) as caught:
        ollama_call(payload)
    assert caught.value.status == 400


def test_ollama_tools_calls_and_results() -> None:
    payload = {
        "messages": [
            user("Weather in Paris?"),
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        ],
        "tools": [WEATHER_TOOL],
        "response_format": {"type": "json_object"},
    }
    body = orjson.loads(ollama_call(payload).content)
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}],
    }
    assert body["messages"][2] == {"role": "tool", "content": "18C", "tool_name": "get_weather"}
    assert body["tools"] == [WEATHER_TOOL]
    assert body["format"] == "json"
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    structured = {
        "messages": [user("x")],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        "tools": [WEATHER_TOOL],
        "tool_choice": "none",
    }
    converted = orjson.loads(ollama_call(structured).content)
    assert converted["format"] == schema
    assert "tools" not in converted


OLLAMA_ANSWER = {
    "model": "llama3:latest",
    "created_at": "2024-07-22T20:33:28.123648Z",
    "message": {"role": "assistant", "content": "Hello!", "thinking": "Greet back."},
    "done_reason": "stop",
    "done": True,
    "total_duration": 5191566416,
    "prompt_eval_count": 26,
    "eval_count": 298,
}


def test_ollama_answer_with_usage_and_thinking() -> None:
    result = ollama.convert_response(OLLAMA_ANSWER, "llama3:latest")
    assert result["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello!",
        "reasoning_content": "Greet back.",
    }
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == {"prompt_tokens": 26, "completion_tokens": 298, "total_tokens": 324}
    cut = ollama.convert_response({**OLLAMA_ANSWER, "done_reason": "length"}, "m")
    assert cut["choices"][0]["finish_reason"] == "length"


def test_ollama_tool_calls_become_openai_tool_calls() -> None:
    answer = {
        **OLLAMA_ANSWER,
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
            ],
        },
    }
    choice = ollama.convert_response(answer, "llama3:latest")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"location":"Paris"}'}


def test_an_ollama_error_body_with_200_is_a_failure() -> None:
    attempt = make_attempt(ChannelType.OLLAMA, "llama3:latest")
    with pytest.raises(UpstreamFailure) as caught:
        OLLAMA.translate_response(attempt, b'{"error": "model is loading"}')
    assert caught.value.error.message == "model is loading"


def ndjson(*events: dict[str, Any]) -> list[bytes]:
    return [json.dumps(event).encode() for event in events]


def feed(translator: Any, lines: list[bytes]) -> list[Any]:
    return [event for line in lines for event in frames(translator.accept(line))]


def test_ollama_stream_lines_become_chunks_then_usage_then_done() -> None:
    translator = ollama.OllamaStream(client_wants_usage=True, model="llama3:latest")
    lines = ndjson(
        {"model": "m", "message": {"role": "assistant", "content": "Hel"}, "done": False},
        {"model": "m", "message": {"role": "assistant", "content": "lo"}, "done": False},
        {
            "model": "m",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 5,
            "eval_count": 2,
        },
    )
    events = feed(translator, [*lines, b"", b"junk"])

    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert events[1]["choices"][0]["delta"] == {"content": "lo"}
    assert events[2]["choices"][0]["finish_reason"] == "stop"
    assert events[3]["choices"] == [] and events[3]["usage"]["total_tokens"] == 7
    assert translator.saw_done and translator.generated_text == "Hello"
    assert len({e["id"] for e in events[:-1]}) == 1


def test_ollama_stream_tool_calls_and_errors() -> None:
    translator = ollama.OllamaStream(client_wants_usage=False, model="m")
    call = {"function": {"name": "get_weather", "arguments": {"location": "Paris"}}}
    events = feed(
        translator,
        ndjson(
            {"message": {"role": "assistant", "content": "", "tool_calls": [call]}, "done": False},
            {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop"},
        ),
    )
    tool_call = events[0]["choices"][0]["delta"]["tool_calls"][0]
    assert tool_call["index"] == 0 and tool_call["function"]["name"] == "get_weather"
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert not any("usage" in e for e in events[:-1])

    failing = ollama.OllamaStream(client_wants_usage=False, model="m")
    errors = feed(failing, ndjson({"error": "out of memory"}))
    assert errors == [{"error": {"message": "out of memory", "type": "upstream_error",
                                 "param": None, "code": None}}]  # fmt: skip
    assert failing.upstream_error is not None and not failing.saw_done


def test_ollama_embeddings_both_ways() -> None:
    attempt = make_attempt(ChannelType.OLLAMA, "nomic-embed-text", mode=RelayMode.EMBEDDINGS)
    call = build(OLLAMA, attempt, {"input": ["a", "b"], "dimensions": 4})
    assert call.url.endswith("/api/embed")
    assert orjson.loads(call.content) == {
        "model": "nomic-embed-text",
        "input": ["a", "b"],
        "dimensions": 4,
    }
    with pytest.raises(RelayError):
        build(OLLAMA, attempt, {"input": [[1, 2, 3]]})
    result = ollama.convert_embedding_response(
        {"embeddings": [[0.5, 0.25]], "prompt_eval_count": 4}, "nomic-embed-text"
    )
    assert result["data"] == [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}]
    assert result["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


# ====================================================================== Cohere

COHERE = cohere.CohereAdaptor()


def cohere_body(payload: dict[str, Any], model: str = "command-r", **attempt: Any) -> Any:
    call = build(COHERE, make_attempt(ChannelType.COHERE, model, **attempt), payload)
    return orjson.loads(call.content)


def test_cohere_request_preamble_history_and_message() -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            user("Hi"),
            {"role": "assistant", "content": "Hello!"},
            {"role": "system", "content": "Answer in French."},
            user([{"type": "text", "text": "Weather?"}]),
        ],
        "temperature": 0.4,
        "top_p": 1.0,
        "top_k": 900,
        "max_tokens": 50,
        "stop": ["a", "b", "c", "d", "e", "f"],
        "frequency_penalty": 1.5,
        "presence_penalty": -1,
        "seed": 7,
    }
    assert cohere_body(payload) == {
        "model": "command-r",
        "message": "Weather?",
        "chat_history": [
            {"role": "USER", "message": "Hi"},
            {"role": "CHATBOT", "message": "Hello!"},
            {"role": "SYSTEM", "message": "Answer in French."},
        ],
        "preamble": "Be brief.",
        "temperature": 0.4,
        "p": 0.99,
        "k": 500,
        "frequency_penalty": 1.0,
        "presence_penalty": 0.0,
        "max_tokens": 50,
        "seed": 7,
        "stop_sequences": ["a", "b", "c", "d", "e"],
        "stream": False,
    }


def test_cohere_internet_models_use_web_search() -> None:
    body = cohere_body({"messages": [user("News?")]}, model="command-r-plus-internet", stream=True)
    assert body["model"] == "command-r-plus"
    assert body["connectors"] == [{"id": "web-search"}]
    assert body["stream"] is True


def test_cohere_tools_and_a_tool_round_trip() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
    }
    payload = {
        "messages": [
            user("Weather in Paris?"),
            {"role": "assistant", "content": "I will look it up.", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "none",  # ignored: the results need their tools
    }
    body = cohere_body(payload)
    assert body["message"] == ""
    assert body["chat_history"] == [
        {"role": "USER", "message": "Weather in Paris?"},
        {
            "role": "CHATBOT",
            "message": "I will look it up.",
            "tool_calls": [{"name": "get_weather", "parameters": {"location": "Paris"}}],
        },
    ]
    assert body["tool_results"] == [
        {
            "call": {"name": "get_weather", "parameters": {"location": "Paris"}},
            "outputs": [{"temp": 18}],
        }
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "parameter_definitions": {
                "location": {"description": "The city", "type": "str", "required": True},
                "days": {"description": "", "type": "int", "required": False},
                "tags": {"description": "", "type": "List[str]", "required": False},
            },
        }
    ]
    # Earlier results (not the current turn) are TOOL entries; plain text is wrapped.
    later = {
        **payload,
        "messages": [
            *payload["messages"][:2],
            {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
            {"role": "assistant", "content": "It is 18C."},
            user("Thanks"),
        ],
    }
    history = cohere_body(later)["chat_history"]
    assert history[2] == {
        "role": "TOOL",
        "tool_results": [
            {
                "call": {"name": "get_weather", "parameters": {"location": "Paris"}},
                "outputs": [{"result": "18C"}],
            }
        ],
    }
    assert "tools" not in cohere_body({**later, "tool_choice": "none"})


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": [user("x")], "n": 3},
        {"messages": [user([image(f"data:image/png;base64,{PNG}")])]},
        {"messages": [user("x"), {"role": "assistant", "content": "prefill"}]},
    ],
)
def test_cohere_refuses_what_it_cannot_do(payload: dict[str, Any]) -> None:
    with pytest.raises(RelayError) as caught:
        cohere_body(payload)
    assert caught.value.status == 400


def test_cohere_response_format_and_a_lone_system_prompt() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = cohere_body(
        {
            "messages": [{"role": "system", "content": "Say hi"}],
            "response_format": {"type": "json_schema", "json_schema": {"schema": schema}},
        }
    )
    assert body["message"] == "Say hi" and "preamble" not in body
    assert body["response_format"] == {"type": "json_object", "schema": schema}


COHERE_ANSWER = {
    "response_id": "5ba8b5b8-6b6c-4a44-8d9a-0f1c0b2d1c2e",
    "text": "Bonjour!",
    "generation_id": "gen-123",
    "chat_history": [],
    "finish_reason": "COMPLETE",
    "meta": {
        "api_version": {"version": "1"},
        "billed_units": {"input_tokens": 12, "output_tokens": 3},
        "tokens": {"input_tokens": 70, "output_tokens": 3},
    },
}


def test_cohere_answer_with_billed_usage() -> None:
    result = cohere.convert_response(COHERE_ANSWER, "command-r")
    assert result["id"] == "chatcmpl-gen-123"
    assert result["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour!"}
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert cohere.convert_response({**COHERE_ANSWER, "finish_reason": "MAX_TOKENS"}, "m")[
        "choices"][0]["finish_reason"] == "length"  # fmt: skip
    tokens_only = {**COHERE_ANSWER, "meta": {"tokens": {"input_tokens": 9, "output_tokens": 1}}}
    assert cohere.convert_response(tokens_only, "m")["usage"]["prompt_tokens"] == 9


def test_cohere_tool_calls_become_openai_tool_calls() -> None:
    answer = {
        **COHERE_ANSWER,
        "text": "I will look up the weather.",
        "tool_calls": [{"name": "get_weather", "parameters": {"location": "Paris"}}],
    }
    choice = cohere.convert_response(answer, "command-r")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I will look up the weather."
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"location":"Paris"}',
    }


def test_cohere_stream_events_become_chunks() -> None:
    translator = cohere.CohereStream(client_wants_usage=True, model="command-r")
    lines = ndjson(
        {"is_finished": False, "event_type": "stream-start", "generation_id": "g1"},
        {"is_finished": False, "event_type": "search-queries-generation", "search_queries": []},
        {"is_finished": False, "event_type": "text-generation", "text": "Bon"},
        {"is_finished": False, "event_type": "text-generation", "text": "jour"},
        {
            "is_finished": True,
            "event_type": "stream-end",
            "finish_reason": "COMPLETE",
            "response": COHERE_ANSWER,
        },
    )
    events = feed(translator, lines)

    assert events[0]["id"] == "chatcmpl-g1"
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [e["choices"][0]["delta"].get("content") for e in events[1:3]] == ["Bon", "jour"]
    assert events[3]["choices"][0]["finish_reason"] == "stop"
    assert events[4]["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    assert events[5] == "[DONE]"
    assert translator.generated_text == "Bonjour"
    # The SSE form of the same events is understood too.
    sse = cohere.CohereStream(client_wants_usage=False, model="command-r")
    assert feed(sse, [b"data: " + lines[2]])[0]["choices"][0]["delta"]["content"] == "Bon"


def test_cohere_stream_tool_calls_and_errors() -> None:
    translator = cohere.CohereStream(client_wants_usage=False, model="command-r")
    call = {"name": "get_weather", "parameters": {"location": "Paris"}}
    events = feed(
        translator,
        ndjson(
            {"event_type": "stream-start", "generation_id": "g"},
            {"event_type": "tool-calls-chunk", "tool_call_delta": {"index": 0, "name": "get"}},
            {"event_type": "tool-calls-generation", "text": "", "tool_calls": [call]},
            {"event_type": "stream-end", "finish_reason": "COMPLETE", "response": COHERE_ANSWER},
        ),
    )
    calls = [c for e in events[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert len(calls) == 1 and calls[0]["index"] == 0
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"

    failing = cohere.CohereStream(client_wants_usage=False, model="command-r")
    error = {"event_type": "stream-end", "finish_reason": "ERROR", "response": {"text": "boom"}}
    (frame,) = feed(failing, ndjson(error))
    assert frame["error"]["message"] == "boom"
    assert failing.upstream_error is not None and not failing.saw_done


def test_cohere_embeddings_both_ways() -> None:
    attempt = make_attempt(ChannelType.COHERE, "embed-english-v3.0", mode=RelayMode.EMBEDDINGS)
    call = build(COHERE, attempt, {"input": "hello"})
    assert call.url == "https://api.cohere.ai/v1/embed"
    assert call.headers["authorization"] == "Bearer key"
    assert orjson.loads(call.content) == {
        "model": "embed-english-v3.0",
        "texts": ["hello"],
        "input_type": "search_document",
    }
    answer = {"embeddings": {"float": [[0.5]]}, "meta": {"billed_units": {"input_tokens": 1}}}
    result = cohere.convert_embedding_response(answer, "embed-english-v3.0")
    assert result["data"][0]["embedding"] == [0.5]
    assert result["usage"] == {"prompt_tokens": 1, "total_tokens": 1}


def test_adaptors_are_registered_and_refuse_other_modes() -> None:
    cases = [
        (ChannelType.OLLAMA, ollama.OllamaAdaptor),
        (ChannelType.COHERE, cohere.CohereAdaptor),
        (ChannelType.PALM, palm.PaLMAdaptor),
    ]
    for channel_type, cls in cases:
        adaptor = adaptor_for(channel_type)
        assert isinstance(adaptor, cls)
        attempt = make_attempt(channel_type, "m", mode=RelayMode.COMPLETIONS)
        with pytest.raises(RelayError) as caught:
            build(adaptor, attempt, {"prompt": "x"})
        assert caught.value.code == "unsupported_mode"
        with pytest.raises(RelayError):
            adaptor.build_raw_request(attempt, b"", "multipart/form-data")


# ====================================================================== through the relay


@pytest.fixture
def palm_fake() -> Iterator[FakePaLM]:
    with FakePaLM(api_key="palm-key") as fake:
        yield fake


@pytest.fixture
def ollama_fake() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture
def cohere_fake() -> Iterator[FakeCohere]:
    with FakeCohere(api_key="co-key") as fake:
        yield fake


def chat(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [user("Hello there")], **fields}


# ---------------------------------------------------------------------- the fakes' strictness


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"prompt": {"messages": [{"author": "0", "content": "a"}]}, "max_tokens": 5}, "Unknown"),
        ({"prompt": {"messages": []}}, "must not be empty"),
        ({"prompt": {"messages": [{"author": "0", "content": "a"}] * 2}}, "alternate"),
        ({"prompt": {"messages": [{"author": "0", "content": "a"}]}, "temperature": 1.5}, "[0.0"),
        ({"prompt": {"messages": [{"author": "0", "content": ""}]}}, "content: required"),
    ],
)  # fmt: skip
def test_the_palm_fake_refuses_what_google_refused(
    palm_fake: FakePaLM, payload: dict[str, Any], message: str
) -> None:
    response = httpx.post(
        f"{palm_fake.base_url}/v1beta2/models/chat-bison-001:generateMessage?key=palm-key",
        json=payload,
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"model": "mistral:latest", "messages": []}, 404, "try pulling it first"),
        ({"model": "llama3:latest", "messages": [user([{"type": "text", "text": "x"}])]}, 400,
         "cannot unmarshal array"),
        ({"model": "llama3:latest", "messages": [{"role": "assistant", "content": "",
          "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}]}, 400,
         "ToolCallFunction"),
        ({"model": "llama3:latest", "messages": [{"role": "user", "content": "x",
          "images": ["data:image/png;base64,AAAA"]}]}, 400, "illegal base64"),
        ({"model": "llama3:latest", "messages": [], "options": {"num_predict": "5"}}, 400,
         "must be of type integer"),
    ],
)  # fmt: skip
def test_the_ollama_fake_refuses_what_ollama_refuses(
    ollama_fake: FakeOllama, payload: dict[str, Any], status: int, message: str
) -> None:
    response = httpx.post(f"{ollama_fake.base_url}/api/chat", json=payload)
    assert response.status_code == status
    assert message in response.json()["error"]


def test_the_ollama_fake_streams_ndjson_unless_told_not_to(ollama_fake: FakeOllama) -> None:
    payload = {"model": "llama3:latest", "messages": [user("Hi")]}
    streamed = httpx.post(f"{ollama_fake.base_url}/api/chat", json=payload)
    assert streamed.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert lines[-1]["done"] is True and lines[-1]["eval_count"] == 9
    plain = httpx.post(f"{ollama_fake.base_url}/api/chat", json={**payload, "stream": False})
    assert plain.json()["message"]["content"] == ollama_fake.reply


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"message": "x", "top_p": 0.5}, 'unknown field "top_p"'),
        ({"message": ""}, "at least 1 token"),
        ({"message": "x", "p": 1.0}, "p must be between"),
        ({"message": "x", "k": 501}, "k must be between"),
        ({"message": "x", "stop_sequences": list("abcdef")}, "at most 5"),
        ({"message": "x", "chat_history": [{"role": "ASSISTANT", "message": "y"}]}, "role"),
        ({"message": "", "tool_results": [{"call": {"name": "f", "parameters": {}},
          "outputs": [{"a": 1}]}]}, "requires tools"),
    ],
)  # fmt: skip
def test_the_cohere_fake_refuses_what_cohere_refuses(
    cohere_fake: FakeCohere, payload: dict[str, Any], message: str
) -> None:
    response = httpx.post(
        f"{cohere_fake.base_url}/v1/chat",
        json={"model": "command-r", **payload},
        headers={"authorization": "Bearer co-key"},
    )
    assert response.status_code == 400
    assert message in response.json()["message"]


def test_the_cohere_fake_streams_ndjson_or_sse(cohere_fake: FakeCohere) -> None:
    url = f"{cohere_fake.base_url}/v1/chat"
    body = {"model": "command-r", "message": "Hi", "stream": True}
    auth = {"authorization": "Bearer co-key"}
    ndjson_stream = httpx.post(url, json=body, headers=auth)
    assert ndjson_stream.headers["content-type"] == "application/stream+json"
    events = [json.loads(line) for line in ndjson_stream.text.splitlines()]
    assert [e["event_type"] for e in events][0::4] == ["stream-start", "stream-end"]
    sse_stream = httpx.post(url, json=body, headers={**auth, "accepts": "text/event-stream"})
    assert sse_stream.headers["content-type"] == "text/event-stream"
    assert sse_stream.text.startswith("event: stream-start\ndata: {")


# ---------------------------------------------------------------------- PaLM


@pytest.fixture
def palm_channel(world: World, palm_fake: FakePaLM) -> Channel:
    return make_channel(
        type=ChannelType.PALM, base_url=palm_fake.base_url, key="palm-key", models="PaLM-2"
    )


def test_palm_through_the_relay_counts_tokens_itself(
    world: World, palm_channel: Channel, palm_fake: FakePaLM
) -> None:
    result = world.client.post("/v1/chat/completions", chat("PaLM-2", temperature=0.3))

    assert result.status == 200, result.body
    sent = palm_fake.last_request
    assert sent.path == "/v1beta2/models/chat-bison-001:generateMessage"
    assert sent.json == {
        "prompt": {"messages": [{"author": "0", "content": "Hello there"}]},
        "temperature": 0.3,
    }
    assert result.json()["choices"][0]["message"]["content"] == palm_fake.reply
    world.refresh()
    log = Log.objects.get()
    assert log.completion_tokens == len(cl100k_base().encode(palm_fake.reply))
    assert log.prompt_tokens > 0


def test_palm_stream_is_the_answer_in_one_chunk(
    world: World, palm_channel: Channel, palm_fake: FakePaLM
) -> None:
    result = world.client.post("/v1/chat/completions", chat("PaLM-2", stream=True))

    assert result.status == 200, result.body
    assert result.headers["content-type"] == "text/event-stream"
    assert palm_fake.last_request.path.endswith(":generateMessage")  # no stream upstream
    events = result.events
    assert events[-1] == "[DONE]"
    assert events[0]["choices"][0]["delta"]["content"] == palm_fake.reply
    assert events[1]["choices"][0]["finish_reason"] == "stop"
    world.refresh()
    assert Log.objects.get().is_stream


def test_palm_filtered_and_errors_through_the_relay(
    world: World, palm_channel: Channel, palm_fake: FakePaLM
) -> None:
    palm_fake.scenario = "filtered"
    filtered = world.client.post("/v1/chat/completions", chat("PaLM-2"))
    assert filtered.json()["choices"][0]["finish_reason"] == "content_filter"

    palm_fake.scenario = "error_429"
    limited = world.client.post("/v1/chat/completions", chat("PaLM-2"))
    assert limited.status == 429
    assert "Resource has been exhausted" in limited.json()["error"]["message"]

    palm_fake.scenario = "ok"
    palm_fake.api_key = "other"
    refused = world.client.post("/v1/chat/completions", chat("PaLM-2"))
    assert refused.status == 400
    assert "API key not valid" in refused.json()["error"]["message"]


# ---------------------------------------------------------------------- Ollama


@pytest.fixture
def ollama_channel(world: World, ollama_fake: FakeOllama) -> Channel:
    return make_channel(
        type=ChannelType.OLLAMA,
        base_url=ollama_fake.base_url,
        key="",
        models="llama3:latest,llava:latest,nomic-embed-text:latest,qwen:0.5b-chat",
    )


def test_ollama_chat_through_the_relay(
    world: World, ollama_channel: Channel, ollama_fake: FakeOllama
) -> None:
    result = world.client.post("/v1/chat/completions", chat("llama3:latest", max_tokens=30))

    assert result.status == 200, result.body
    sent = ollama_fake.last_request
    assert sent.json["stream"] is False
    assert sent.json["options"] == {"num_predict": 30}
    body = result.json()
    assert body["choices"][0]["message"]["content"] == ollama_fake.reply
    assert body["usage"] == {"prompt_tokens": 13, "completion_tokens": 9, "total_tokens": 22}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (13, 9)
    expected = expected_quota(13, 9, "llama3:latest", ChannelType.OLLAMA)
    assert log.quota == expected == world.user.used_quota


def test_ollama_stream_through_the_relay(
    world: World, ollama_channel: Channel, ollama_fake: FakeOllama
) -> None:
    payload = chat("llama3:latest", stream=True, stream_options={"include_usage": True})
    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    assert ollama_fake.last_request.json["stream"] is True
    events = result.events
    assert events[-1] == "[DONE]" and result.body.count(b"[DONE]") == 1
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2])
    assert text == ollama_fake.reply
    assert events[-2]["usage"]["total_tokens"] == 22
    world.refresh()
    assert (Log.objects.get().prompt_tokens, Log.objects.get().completion_tokens) == (13, 9)


def test_ollama_image_and_tools_through_the_relay(
    world: World, ollama_channel: Channel, ollama_fake: FakeOllama
) -> None:
    parts = [{"type": "text", "text": "What?"}, image(f"data:image/png;base64,{PNG}")]
    seen = world.client.post(
        "/v1/chat/completions", {"model": "llava:latest", "messages": [user(parts)]}
    )
    assert seen.status == 200, seen.body
    assert ollama_fake.last_request.json["messages"][0]["images"] == [PNG]
    assert seen.json()["choices"][0]["message"]["content"].endswith("I see 1 image(s).")

    called = world.client.post(
        "/v1/chat/completions", chat("llama3:latest", tools=[WEATHER_TOOL], stream=True)
    )
    calls = [
        c for e in called.events[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert calls[0]["function"]["name"] == "get_weather"
    assert called.events[-2]["choices"][0]["finish_reason"] == "tool_calls"

    remote = world.client.post(
        "/v1/chat/completions",
        {"model": "llava:latest", "messages": [user([image("http://127.0.0.1:1/x.png")])]},
    )
    assert remote.status == 400
    assert remote.json()["error"]["code"] == "invalid_image_url"


def test_ollama_embeddings_through_the_relay(
    world: World, ollama_channel: Channel, ollama_fake: FakeOllama
) -> None:
    result = world.client.post(
        "/v1/embeddings", {"model": "nomic-embed-text:latest", "input": ["hello world"]}
    )

    assert result.status == 200, result.body
    body = result.json()
    assert body["data"][0]["embedding"] == gemini_vector("hello world", 8)
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    world.refresh()
    assert Log.objects.get().prompt_tokens == 2


def test_ollama_errors_through_the_relay(
    world: World, ollama_channel: Channel, ollama_fake: FakeOllama
) -> None:
    missing = world.client.post("/v1/chat/completions", chat("qwen:0.5b-chat"))
    assert missing.status == 404
    assert "try pulling it first" in missing.json()["error"]["message"]

    ollama_fake.scenario = "error_mid_stream"
    events = world.client.post("/v1/chat/completions", chat("llama3:latest", stream=True)).events
    assert events[-1]["error"]["message"] == "an error was encountered while running the model"
    assert "[DONE]" not in events


# ---------------------------------------------------------------------- Cohere


@pytest.fixture
def cohere_channel(world: World, cohere_fake: FakeCohere) -> Channel:
    return make_channel(
        type=ChannelType.COHERE,
        base_url=cohere_fake.base_url,
        key="co-key",
        models="command-r,command-r-internet,embed-english-v3.0",
    )


def test_cohere_chat_through_the_relay_bills_what_cohere_billed(
    world: World, cohere_channel: Channel, cohere_fake: FakeCohere
) -> None:
    payload = chat("command-r", messages=[{"role": "system", "content": "Be brief."}, user("Hi")])
    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    sent = cohere_fake.last_request
    assert sent.headers["authorization"] == "Bearer co-key"
    assert (sent.json["message"], sent.json["preamble"]) == ("Hi", "Be brief.")
    body = result.json()
    assert body["choices"][0]["message"]["content"] == cohere_fake.reply
    assert body["usage"] == {"prompt_tokens": 15, "completion_tokens": 6, "total_tokens": 21}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (15, 6)
    expected = expected_quota(15, 6, "command-r", ChannelType.COHERE)
    assert log.quota == expected == world.user.used_quota


def test_cohere_stream_and_web_search_through_the_relay(
    world: World, cohere_channel: Channel, cohere_fake: FakeCohere
) -> None:
    payload = chat("command-r-internet", stream=True, stream_options={"include_usage": True})
    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    assert cohere_fake.last_request.headers["accepts"] == "text/event-stream"
    sent = cohere_fake.last_request.json
    assert (sent["model"], sent["connectors"], sent["stream"]) == (
        "command-r",
        [{"id": "web-search"}],
        True,
    )
    events = result.events
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2])
    assert text == cohere_fake.reply
    assert events[-2]["usage"]["total_tokens"] == 21
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (
        15,
        6,
        "command-r-internet",
    )


def test_cohere_ndjson_stream_through_the_relay(
    world: World, cohere_channel: Channel, cohere_fake: FakeCohere
) -> None:
    cohere_fake.sse_when_asked = False  # a deployment that streams NDJSON whatever is asked

    result = world.client.post("/v1/chat/completions", chat("command-r", stream=True))

    assert result.status == 200, result.body
    events = result.events
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == cohere_fake.reply
    world.refresh()
    assert (Log.objects.get().prompt_tokens, Log.objects.get().completion_tokens) == (15, 6)


def test_cohere_tool_round_trip_through_the_relay(
    world: World, cohere_channel: Channel, cohere_fake: FakeCohere
) -> None:
    first = world.client.post("/v1/chat/completions", chat("command-r", tools=[WEATHER_TOOL]))
    assert first.status == 200, first.body
    message = first.json()["choices"][0]["message"]
    call = message["tool_calls"][0]
    assert orjson.loads(call["function"]["arguments"]) == cohere_fake.function_args

    second = world.client.post(
        "/v1/chat/completions",
        chat(
            "command-r",
            tools=[WEATHER_TOOL],
            messages=[
                user("Weather in Paris?"),
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 18}'},
            ],
        ),
    )

    assert second.status == 200, second.body
    sent = cohere_fake.last_request.json
    assert sent["message"] == ""
    assert sent["tool_results"][0]["call"] == {
        "name": "get_weather",
        "parameters": cohere_fake.function_args,
    }
    assert second.json()["choices"][0]["message"]["content"] == cohere_fake.reply


def test_cohere_embeddings_through_the_relay(
    world: World, cohere_channel: Channel, cohere_fake: FakeCohere
) -> None:
    result = world.client.post(
        "/v1/embeddings", {"model": "embed-english-v3.0", "input": ["a b c", "d"]}
    )

    assert result.status == 200, result.body
    assert result.json()["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert result.json()["data"][1]["embedding"] == gemini_vector("d", 8)


def test_cohere_errors_through_the_relay(
    world: World, cohere_channel: Channel, cohere_fake: FakeCohere
) -> None:
    cohere_fake.scenario = "error_429"
    limited = world.client.post("/v1/chat/completions", chat("command-r"))
    assert limited.status == 429
    assert "Trial key" in limited.json()["error"]["message"]

    cohere_fake.scenario = "error_mid_stream"
    events = world.client.post("/v1/chat/completions", chat("command-r", stream=True)).events
    assert events[-1]["error"]["code"] == "ERROR"

    cohere_fake.scenario = "ok"
    cohere_fake.api_key = "rotated"
    refused = world.client.post("/v1/chat/completions", chat("command-r"))
    assert refused.status == 401
    assert "invalid api token" in refused.json()["error"]["message"]
    world.refresh()
    assert Log.objects.count() == 1  # only the interrupted stream, for what it generated
