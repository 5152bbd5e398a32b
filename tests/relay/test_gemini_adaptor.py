"""The Gemini adaptor: conversions in isolation, then the relay against a fake Gemini."""

from __future__ import annotations

import base64
import math
import struct
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
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.gemini import GeminiAdaptor, GeminiStream
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.http import Request
from relay.modes import RelayMode
from tests.factories import make_channel
from tests.fakes.gemini_upstream import FakeGemini, gemini_vector
from tests.relay.conftest import World

MODEL = "gemini-1.5-flash"
KEY = "gemini-key"
ADAPTOR = GeminiAdaptor()
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
SAFETY_CATEGORIES = [
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
]


def make_attempt(
    *,
    mode: RelayMode = RelayMode.CHAT,
    stream: bool = False,
    model: str = MODEL,
    base_url: str = "",
    config: dict[str, object] | None = None,
    client_body: dict[str, Any] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=ChannelType.GEMINI,
        name="gemini",
        key=KEY,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(model,),
        model_mapping={},
        config=config or {},
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


def upstream_body(payload: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    body = OpenAIBody(orjson.dumps(payload), dict(payload))
    return orjson.loads(ADAPTOR.build_request(make_attempt(**attempt), body).content)


def upstream_url(payload: dict[str, Any], **attempt: Any) -> str:
    body = OpenAIBody(orjson.dumps(payload), dict(payload))
    return ADAPTOR.build_request(make_attempt(**attempt), body).url


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def translate(response: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    return orjson.loads(ADAPTOR.translate_response(make_attempt(**attempt), orjson.dumps(response)))


def candidate(*parts: dict[str, Any], finish: str | None = "STOP", index: int = 0) -> dict:
    entry: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": index}
    if finish is not None:
        entry["finishReason"] = finish
    return entry


def gemini_response(*candidates: dict[str, Any], **usage: int) -> dict[str, Any]:
    metadata = {"promptTokenCount": 20, "candidatesTokenCount": 8, "totalTokenCount": 28}
    return {
        "candidates": list(candidates),
        "usageMetadata": {**metadata, **usage},
        "modelVersion": "gemini-1.5-flash-002",
        "responseId": "resp-abc",
    }


# ---------------------------------------------------------------------- requests


def test_a_plain_request_has_contents_safety_settings_and_no_openai_fields() -> None:
    sent = upstream_body(chat(user("Hi"), stream_options={"include_usage": True}, user="u-7"))

    assert sent == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "safetySettings": [
            {"category": category, "threshold": "BLOCK_NONE"} for category in SAFETY_CATEGORIES
        ],
    }


def test_safety_threshold_comes_from_settings(settings: Any) -> None:
    settings.GEMINI_SAFETY_SETTING = "BLOCK_ONLY_HIGH"

    sent = upstream_body(chat(user("Hi")))

    assert [s["category"] for s in sent["safetySettings"]] == SAFETY_CATEGORIES
    assert {s["threshold"] for s in sent["safetySettings"]} == {"BLOCK_ONLY_HIGH"}


def test_sampling_parameters_become_the_generation_config() -> None:
    sent = upstream_body(
        chat(user("Hi"), temperature=0.3, top_p=0.9, top_k=40, max_tokens=77, stop="END", n=2)
    )

    assert sent["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 77,
        "stopSequences": ["END"],
        "candidateCount": 2,
    }


def test_max_completion_tokens_and_stop_lists() -> None:
    sent = upstream_body(chat(user("Hi"), max_completion_tokens=12, stop=["a", "", "b"]))
    assert sent["generationConfig"] == {"maxOutputTokens": 12, "stopSequences": ["a", "b"]}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "city",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "additionalProperties": False,
                    },
                },
            },
            {
                "responseMimeType": "application/json",
                "responseSchema": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        ),
    ],
)
def test_response_format(response_format: dict[str, Any], expected: dict | None) -> None:
    sent = upstream_body(chat(user("Hi"), response_format=response_format))
    assert sent.get("generationConfig") == expected


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    sent = upstream_body(
        chat(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
            user("Hi"),
        )
    )

    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use French."}]}
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


def test_a_system_message_alone_is_sent_as_the_user_turn() -> None:
    sent = upstream_body(chat({"role": "system", "content": "Say hi."}))
    assert "systemInstruction" not in sent
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "Say hi."}]}]


def test_assistant_is_model_and_consecutive_turns_merge_and_empty_ones_drop() -> None:
    sent = upstream_body(
        chat(
            user("First"),
            user([{"type": "text", "text": "Second"}, {"type": "text", "text": ""}]),
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "Answer"},
            user("Third"),
        )
    )

    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "First"}, {"text": "Second"}]},
        {"role": "model", "parts": [{"text": "Answer"}]},
        {"role": "user", "parts": [{"text": "Third"}]},
    ]


def test_images_and_audio_become_inline_or_file_data() -> None:
    content = [
        {"type": "text", "text": "Compare these"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png?size=2"}},
        {"type": "image_url", "image_url": "https://example.com/photo"},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]

    sent = upstream_body(chat(user(content)))

    assert sent["contents"][0]["parts"] == [
        {"text": "Compare these"},
        {"inlineData": {"mimeType": "image/png", "data": PNG_DATA}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
    ]


@pytest.mark.parametrize(
    ("part", "code"),
    [
        (
            {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}},
            "invalid_image_url",
        ),
        ({"type": "image_url", "image_url": {}}, "invalid_image_url"),
        ({"type": "video_url", "video_url": {"url": "https://x/v.mp4"}}, "unsupported_content"),
    ],
)
def test_content_gemini_cannot_take_is_a_client_error(part: dict[str, Any], code: str) -> None:
    with pytest.raises(RelayError) as caught:
        upstream_body(chat(user([part])))
    assert (caught.value.status, caught.value.code) == (400, code)


def test_tools_become_function_declarations() -> None:
    sent = upstream_body(chat(user("Weather?"), tools=[WEATHER_TOOL]))

    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": WEATHER_TOOL["function"]["parameters"],
                }
            ]
        }
    ]
    assert "toolConfig" not in sent


def test_schemas_lose_the_keywords_gemini_rejects() -> None:
    parameters = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            # A property may well be called like a keyword: it stays.
            "additionalProperties": {"type": "string", "format": "uri"},
            "when": {"type": "string", "format": "date-time"},
            "note": {"type": ["string", "null"], "examples": ["x"]},
            "kind": {"const": "city"},
            "tags": {
                "type": "array",
                "items": {"type": "object", "properties": {"a": {"type": "integer"}},
                          "additionalProperties": False},
            },
            "either": {"oneOf": [{"type": "string"}, {"type": "number", "exclusiveMinimum": 0}]},
        },
    }  # fmt: skip
    tool = {"type": "function", "function": {"name": "f", "parameters": parameters}}

    declaration = upstream_body(chat(user("x"), tools=[tool]))["tools"][0]["functionDeclarations"]

    assert declaration[0]["parameters"] == {
        "type": "object",
        "properties": {
            "additionalProperties": {"type": "string"},
            "when": {"type": "string", "format": "date-time"},
            "note": {"type": "string", "nullable": True},
            "kind": {"enum": ["city"]},
            "tags": {
                "type": "array",
                "items": {"type": "object", "properties": {"a": {"type": "integer"}}},
            },
            "either": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        },
    }


def test_functions_without_arguments_have_no_parameters() -> None:
    tools = [
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object",
                                                                          "properties": {}}}},
        {"type": "function", "function": {"name": "ping"}},
        {"type": "web_search"},
    ]  # fmt: skip
    sent = upstream_body(chat(user("x"), tools=tools))
    assert sent["tools"] == [{"functionDeclarations": [{"name": "now"}, {"name": "ping"}]}]


def test_legacy_functions_are_declarations_too() -> None:
    sent = upstream_body(
        chat(user("x"), functions=[WEATHER_TOOL["function"]], function_call={"name": "get_weather"})
    )
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert sent["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, expected: dict[str, Any]) -> None:
    sent = upstream_body(chat(user("Weather?"), tools=[WEATHER_TOOL], tool_choice=choice))
    assert sent["toolConfig"] == {"functionCallingConfig": expected}


def test_tool_calls_and_results_become_function_call_and_response_parts() -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        },
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "get_time", "arguments": "not json"},
        },
    ]
    messages = [
        user("Weather and time in Paris?"),
        {"role": "assistant", "content": "Checking.", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "9:00"}]},
        user("Thanks"),
    ]

    sent = upstream_body(chat(*messages, tools=[WEATHER_TOOL]))

    assert sent["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather",
                                      "response": {"name": "get_weather",
                                                   "content": {"temp": 18}}}},
                {"functionResponse": {"name": "get_time",
                                      "response": {"name": "get_time", "content": "9:00"}}},
                {"text": "Thanks"},
            ],
        },
    ]  # fmt: skip


# ---------------------------------------------------------------------- URL and version


@pytest.mark.parametrize(
    ("base_url", "root"),
    [
        ("", "https://generativelanguage.googleapis.com"),
        ("https://gemini.example/", "https://gemini.example"),
        ("https://gemini.example/v1beta", "https://gemini.example"),
        ("https://proxy.example/google/v1", "https://proxy.example/google"),
    ],
)
def test_url_and_headers(base_url: str, root: str) -> None:
    call = ADAPTOR.build_request(
        make_attempt(base_url=base_url), OpenAIBody(b"{}", chat(user("Hi")))
    )

    assert (call.method, call.url) == ("POST", f"{root}/v1/models/{MODEL}:generateContent")
    assert call.headers["x-goog-api-key"] == KEY
    assert call.headers["content-type"] == "application/json"
    assert "authorization" not in {name.lower() for name in call.headers}
    assert "key=" not in call.url  # the key never goes into URLs (and logs)


def test_streams_use_server_sent_events() -> None:
    url = upstream_url(chat(user("Hi"), stream=True), stream=True)
    assert url.endswith(f"/v1/models/{MODEL}:streamGenerateContent?alt=sse")


@pytest.mark.parametrize(
    ("payload", "model", "version"),
    [
        (chat(user("Hi")), MODEL, "v1"),
        (chat({"role": "system", "content": "Be brief."}, user("Hi")), MODEL, "v1beta"),
        (chat(user("Hi"), tools=[WEATHER_TOOL]), MODEL, "v1beta"),
        (chat(user("Hi"), response_format={"type": "json_object"}), MODEL, "v1beta"),
        (chat(user("Hi")), "gemini-2.0-flash", "v1beta"),
        (chat(user("Hi")), "gemini-exp-1206", "v1beta"),
    ],
)
def test_version_is_v1_unless_the_request_needs_v1beta(
    payload: dict[str, Any], model: str, version: str
) -> None:
    url = upstream_url({**payload, "model": model}, model=model)
    assert (
        url == f"https://generativelanguage.googleapis.com/{version}/models/{model}:generateContent"
    )


def test_the_channel_config_pins_the_version() -> None:
    payload = chat({"role": "system", "content": "x"}, user("Hi"), tools=[WEATHER_TOOL])
    assert "/v1alpha/models/" in upstream_url(payload, config={"api_version": "v1alpha"})
    assert "/v1/models/" in upstream_url(payload, config={"api_version": "v1"})


def test_the_gemini_version_setting_is_the_default(settings: Any) -> None:
    settings.GEMINI_VERSION = "v1beta"
    assert "/v1beta/models/" in upstream_url(chat(user("Hi")))


# ---------------------------------------------------------------------- embeddings request


def test_embeddings_become_a_batch_with_one_request_per_input() -> None:
    payload = {"model": "text-embedding-004", "input": ["one", "two"], "dimensions": 256}
    attempt = {"mode": RelayMode.EMBEDDINGS, "model": "text-embedding-004"}

    sent = upstream_body(payload, **attempt)

    assert sent == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "one"}]},
             "outputDimensionality": 256},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "two"}]},
             "outputDimensionality": 256},
        ]
    }  # fmt: skip
    url = upstream_url(payload, **attempt)
    assert url.endswith("/v1/models/text-embedding-004:batchEmbedContents")


def test_a_single_string_input_and_token_arrays() -> None:
    attempt = {"mode": RelayMode.EMBEDDINGS, "model": "text-embedding-004"}
    sent = upstream_body({"model": "text-embedding-004", "input": "one"}, **attempt)
    assert sent["requests"] == [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": "one"}]}}
    ]
    with pytest.raises(RelayError) as caught:
        upstream_body({"model": "text-embedding-004", "input": [1, 2, 3]}, **attempt)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_content")


def test_other_modes_and_multipart_are_refused() -> None:
    body = OpenAIBody(b"{}", {"model": MODEL, "prompt": "x"})
    for mode in (RelayMode.COMPLETIONS, RelayMode.MODERATIONS, RelayMode.IMAGES_GENERATIONS):
        with pytest.raises(RelayError) as caught:
            ADAPTOR.build_request(make_attempt(mode=mode), body)
        assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")
        assert "Gemini" in caught.value.message

    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_raw_request(
            make_attempt(mode=RelayMode.AUDIO_TRANSCRIPTION), b"", "multipart/form-data"
        )
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")


def test_gemini_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.GEMINI), GeminiAdaptor)


# ---------------------------------------------------------------------- responses


def test_text_response_and_usage() -> None:
    result = translate(gemini_response(candidate({"text": "Hello"}, {"text": "!"})))

    assert result["id"] == "chatcmpl-resp-abc"
    assert result["object"] == "chat.completion"
    assert result["model"] == MODEL
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello!"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert result["usage"] == {"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28}


def test_thoughts_become_reasoning_content_and_count_as_completion() -> None:
    response = gemini_response(
        candidate({"text": "Greet back.", "thought": True}, {"text": "Hi!"}),
        thoughtsTokenCount=30,
        cachedContentTokenCount=4,
        totalTokenCount=58,
    )

    result = translate(response)

    assert result["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hi!",
        "reasoning_content": "Greet back.",
    }
    assert result["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 38,
        "total_tokens": 58,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }


def test_function_calls_become_tool_calls() -> None:
    response = gemini_response(
        candidate(
            {"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {}}},
        )
    )

    choice = translate(response)["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"location": "Paris"}
    assert calls[1]["function"]["arguments"] == "{}"
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert calls[0]["id"] != calls[1]["id"]


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        (None, "stop"),
    ],
)
def test_finish_reasons(reason: str | None, finish: str) -> None:
    response = gemini_response(candidate({"text": "x"}, finish=reason))
    assert translate(response)["choices"][0]["finish_reason"] == finish


def test_a_candidate_stopped_for_safety_has_empty_content() -> None:
    response = gemini_response({"finishReason": "SAFETY", "index": 0}, candidatesTokenCount=0)
    choice = translate(response)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ""}
    assert choice["finish_reason"] == "content_filter"


def test_a_blocked_prompt_is_an_empty_content_filtered_answer() -> None:
    response = {
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }

    result = translate(response)

    assert result["object"] == "chat.completion"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert result["usage"] == {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9}


def test_several_candidates_are_several_choices() -> None:
    response = gemini_response(
        candidate({"text": "A"}, index=0), candidate({"text": "B"}, finish="MAX_TOKENS", index=1)
    )
    choices = translate(response)["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


def test_embeddings_response_is_an_openai_list_without_made_up_usage() -> None:
    attempt = {"mode": RelayMode.EMBEDDINGS, "model": "text-embedding-004"}

    result = translate({"embeddings": [{"values": [0.5, -0.25]}, {"values": [1.0]}]}, **attempt)

    assert result == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -0.25]},
            {"object": "embedding", "index": 1, "embedding": [1.0]},
        ],
        "model": "text-embedding-004",
    }


def test_embeddings_in_base64_when_the_client_asks() -> None:
    attempt = {
        "mode": RelayMode.EMBEDDINGS,
        "model": "text-embedding-004",
        "client_body": {"model": "text-embedding-004", "input": "x", "encoding_format": "base64"},
    }

    result = translate({"embeddings": [{"values": [0.5, -0.25]}]}, **attempt)

    raw = base64.b64decode(result["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -0.25)


def test_a_response_without_token_counts_has_no_usage() -> None:
    # The relay then counts the generated text itself rather than billing zeros.
    result = translate({"candidates": [candidate({"text": "Hi"})], "usageMetadata": {}})
    assert "usage" not in result


def test_non_json_bodies_pass_through() -> None:
    assert ADAPTOR.translate_response(make_attempt(), b"oops") == b"oops"


# ---------------------------------------------------------------------- stream translation


def decode_frames(raw: bytes) -> list[Any]:
    frames: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: "), block
            payload = block[6:]
            frames.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return frames


def feed(translator: GeminiStream, *events: dict[str, Any]) -> list[Any]:
    raw = b""
    for event in events:
        # Gemini frames end in CRLF CRLF; the relay's line splitter strips the CRs.
        for line in (b"data: " + orjson.dumps(event), b""):
            raw += translator.accept(line) or b""
    return decode_frames(raw)


def event(*candidates: dict[str, Any], **usage: int) -> dict[str, Any]:
    body: dict[str, Any] = {"candidates": list(candidates), "responseId": "stream-1"}
    if usage:
        body["usageMetadata"] = {"promptTokenCount": 20, **usage}
    return body


def deltas(frames: list[Any]) -> list[dict[str, Any]]:
    return [f["choices"][0]["delta"] for f in frames if f != "[DONE]" and f["choices"]]


def test_text_stream_event_by_event() -> None:
    translator = GeminiStream(client_wants_usage=False, model=MODEL)

    first = feed(translator, event(candidate({"text": "Hel"}, finish=None), totalTokenCount=20))
    assert len(first) == 1
    assert first[0]["object"] == "chat.completion.chunk"
    assert first[0]["id"] == "chatcmpl-stream-1"
    assert first[0]["model"] == MODEL
    assert deltas(first) == [{"role": "assistant", "content": "Hel"}]
    assert first[0]["choices"][0]["finish_reason"] is None

    second = feed(translator, event(candidate({"text": "lo"}, finish=None), candidatesTokenCount=1))
    assert deltas(second) == [{"content": "lo"}]
    assert second[0]["id"] == first[0]["id"]
    assert translator.usage == {"prompt_tokens": 20, "completion_tokens": 1, "total_tokens": 21}
    assert not translator.saw_done

    last = feed(
        translator,
        event(candidate({"text": " there"}), candidatesTokenCount=3, totalTokenCount=23),
    )
    assert deltas(last) == [{"content": " there"}]
    assert last[0]["choices"][0]["finish_reason"] == "stop"
    assert last[-1] == "[DONE]"
    assert len(last) == 2  # no usage chunk: not asked for
    assert translator.saw_done
    assert translator.usage == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    assert translator.upstream_error is None
    assert translator.generated_text == "Hello there"


def test_usage_chunk_before_done_only_when_the_client_asked() -> None:
    translator = GeminiStream(client_wants_usage=True, model=MODEL)
    frames = feed(
        translator,
        event(candidate({"text": "Hi"}, finish=None)),
        event(candidate({"text": "!"}), candidatesTokenCount=2, thoughtsTokenCount=3),
    )

    assert frames[-1] == "[DONE]"
    usage_chunk = frames[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["id"] == frames[0]["id"]
    assert usage_chunk["usage"]["prompt_tokens"] == 20
    assert usage_chunk["usage"]["completion_tokens"] == 5
    assert frames[-3]["choices"][0]["finish_reason"] == "stop"


def test_thought_parts_stream_as_reasoning_content() -> None:
    translator = GeminiStream(client_wants_usage=False, model=MODEL)
    frames = feed(
        translator,
        event(candidate({"text": "Let me think.", "thought": True}, finish=None)),
        event(candidate({"text": "Done."})),
    )

    assert deltas(frames) == [
        {"role": "assistant", "reasoning_content": "Let me think."},
        {"content": "Done."},
    ]
    assert translator.generated_text == "Let me think.Done."


def test_function_calls_stream_whole_and_numbered() -> None:
    translator = GeminiStream(client_wants_usage=False, model=MODEL)
    frames = feed(
        translator,
        event(candidate({"text": "Checking."}, finish=None)),
        event(candidate({"functionCall": {"name": "get_weather", "args": {"location": "Paris"}}},
                        finish=None)),
        event(candidate({"functionCall": {"name": "get_time", "args": {}}})),
    )  # fmt: skip

    calls = [call for d in deltas(frames) for call in d.get("tool_calls") or ()]
    assert [(c["index"], c["function"]["name"]) for c in calls] == [
        (0, "get_weather"),
        (1, "get_time"),
    ]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"location": "Paris"}
    assert all(c["type"] == "function" and c["id"].startswith("call_") for c in calls)
    assert frames[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert frames[-1] == "[DONE]"
    assert translator.generated_text == 'Checking.get_weather{"location":"Paris"}get_time{}'


def test_an_error_event_becomes_an_openai_error_frame() -> None:
    translator = GeminiStream(client_wants_usage=False, model=MODEL)
    feed(translator, event(candidate({"text": "Hi"}, finish=None)))

    frames = feed(
        translator, {"error": {"code": 500, "message": "Internal error", "status": "INTERNAL"}}
    )

    assert frames == [
        {
            "error": {
                "message": "Internal error",
                "type": "upstream_error",
                "param": None,
                "code": "INTERNAL",
            }
        }
    ]
    assert translator.upstream_error is not None
    assert not translator.saw_done


def test_a_blocked_prompt_in_a_stream_finishes_it() -> None:
    translator = GeminiStream(client_wants_usage=True, model=MODEL)
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
    }

    frames = feed(translator, blocked)

    assert frames[0]["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": "content_filter",
        }
    ]
    assert frames[1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 0, "total_tokens": 9}
    assert frames[2] == "[DONE]"
    assert translator.saw_done


def test_several_candidates_finish_when_all_have() -> None:
    translator = GeminiStream(client_wants_usage=False, model=MODEL, candidates=2)

    first = feed(translator, event(candidate({"text": "A"}, index=0)))
    assert [c["index"] for c in first[0]["choices"]] == [0]
    assert "[DONE]" not in first

    second = feed(translator, event(candidate({"text": "B"}, index=1)))
    assert second[0]["choices"][0]["delta"] == {"role": "assistant", "content": "B"}
    assert second[-1] == "[DONE]"


def test_the_candidate_count_comes_from_the_clients_n() -> None:
    attempt = make_attempt(stream=True, client_body=chat(user("x"), n=3, stream=True))
    translator = ADAPTOR.stream_translator(attempt, client_wants_usage=False)
    assert isinstance(translator, GeminiStream)
    assert translator.candidates == 3


def test_junk_lines_and_anything_after_the_end_are_dropped() -> None:
    translator = GeminiStream(client_wants_usage=False, model=MODEL)
    for line in (b"", b": keep-alive", b"event: x", b"data: not json", b"data: [1]"):
        assert translator.accept(line) is None
    assert feed(translator, event(candidate({"text": "Hi"}, finish=None), totalTokenCount=20))
    assert feed(translator, event(candidate({"text": "!"})))[-1] == "[DONE]"

    late = event(candidate({"text": "late"}), candidatesTokenCount=4, totalTokenCount=24)
    assert feed(translator, late) == []
    assert translator.usage is not None
    assert translator.usage["completion_tokens"] == 4  # a late count still counts
    assert translator.generated_text == "Hi!"


def test_an_empty_event_after_the_role_sends_nothing() -> None:
    translator = GeminiStream(client_wants_usage=False, model=MODEL)
    feed(translator, event(candidate({"text": "Hi"}, finish=None)))
    assert feed(translator, event(candidate(finish=None), totalTokenCount=20)) == []


# ---------------------------------------------------------------------- the fake upstream


@pytest.fixture
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=KEY) as fake:
        yield fake


GOOD = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def post_fake(
    fake: FakeGemini,
    payload: dict[str, Any],
    *,
    path: str = f"/v1/models/{MODEL}:generateContent",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = {
        name: value for name, value in {"x-goog-api-key": KEY, **(headers or {})}.items() if value
    }
    return httpx.post(f"{fake.base_url}{path}", json=payload, headers=sent)


@pytest.mark.parametrize(
    ("path", "headers", "payload", "status", "message"),
    [
        (None, {"x-goog-api-key": "wrong"}, GOOD, 400, "API key not valid"),
        (None, {"x-goog-api-key": ""}, GOOD, 403, "unregistered callers"),
        (
            None,
            {},
            {**GOOD, "systemInstruction": {"parts": [{"text": "x"}]}},
            400,
            'Unknown name "systemInstruction"',
        ),
        (None, {}, {**GOOD, "tools": []}, 400, 'Unknown name "tools"'),
        ("/v1/models/gemini-2.0-flash:generateContent", {}, GOOD, 404, "not found for API"),
        (None, {}, {"contents": [{"role": "user", "parts": [{"text": ""}]}]}, 400, "empty text"),
        (None, {}, {"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, 400, "role"),
        (None, {}, {"contents": []}, 400, "contents is not specified"),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {},
            {
                **GOOD,
                "tools": [
                    {
                        "functionDeclarations": [
                            {"name": "f", "parameters": {"type": "object", "properties": {
                                "a": {"type": "string"}}, "additionalProperties": False}}
                        ]
                    }
                ],
            },
            400,
            'Unknown name "additionalProperties"',
        ),
        (
            f"/v1beta/models/{MODEL}:generateContent",
            {},
            {**GOOD, "tools": [{"functionDeclarations": [
                {"name": "f", "parameters": {"type": "object", "properties": {}}}]}]},
            400,
            "should be non-empty for OBJECT type",
        ),
    ],
)  # fmt: skip
def test_the_fake_is_as_strict_as_google(
    gemini: FakeGemini,
    path: str | None,
    headers: dict[str, str],
    payload: dict[str, Any],
    status: int,
    message: str,
) -> None:
    response = post_fake(
        gemini, payload, path=path or f"/v1/models/{MODEL}:generateContent", headers=headers
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status
    assert message in error["message"]


def test_the_fake_streams_sse_frames_with_crlf(gemini: FakeGemini) -> None:
    response = post_fake(gemini, GOOD, path=f"/v1/models/{MODEL}:streamGenerateContent?alt=sse")

    assert response.headers["content-type"] == "text/event-stream"
    frames = [f for f in response.text.split("\r\n\r\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    events = [orjson.loads(f[6:]) for f in frames]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == (
        gemini.reply
    )
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == gemini.candidates_tokens


def test_the_fake_streams_a_json_array_without_alt_sse(gemini: FakeGemini) -> None:
    response = post_fake(gemini, GOOD, path=f"/v1/models/{MODEL}:streamGenerateContent")
    assert isinstance(response.json(), list)


def test_the_fake_embeds_in_batches(gemini: FakeGemini) -> None:
    payload = {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]},
             "outputDimensionality": 8},
        ]
    }  # fmt: skip
    response = post_fake(gemini, payload, path="/v1/models/text-embedding-004:batchEmbedContents")
    assert response.json() == {"embeddings": [{"values": gemini_vector("a", 8)}]}


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def channel(world: World, gemini: FakeGemini) -> Channel:
    return make_channel(
        type=ChannelType.GEMINI,
        base_url=gemini.base_url,
        key=KEY,
        models="gemini-1.5-flash,gemini-2.0-flash,text-embedding-004",
    )


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}


def expected_quota(prompt: int, completion: int, model: str = MODEL) -> int:
    ratio = pricing.model_ratio(model, ChannelType.GEMINI)
    completion_ratio = pricing.completion_ratio(model, ChannelType.GEMINI)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_chat_is_converted_both_ways_and_billed_from_usage_metadata(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "temperature": 0.2})

    assert result.status == 200, result.body
    sent = gemini.last_request
    assert (sent.version, sent.model, sent.action) == ("v1", MODEL, "generateContent")
    assert sent.headers["x-goog-api-key"] == KEY
    assert "authorization" not in sent.headers
    assert sent.json is not None
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "Hello there"}]}]
    assert sent.json["generationConfig"] == {"temperature": 0.2}
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": gemini.reply}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert world.upstream.requests == []  # the OpenAI channel was never involved

    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.model_name == MODEL
    assert log.channel_id == channel.pk
    assert log.quota == expected_quota(11, 7) == world.user.used_quota


def test_stream_is_converted_and_billed_from_usage_metadata(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200, result.body
    assert result.headers["content-type"] == "text/event-stream"
    assert gemini.last_request.action == "streamGenerateContent"
    assert gemini.last_request.query == {"alt": "sse"}
    events = result.events
    assert events[-1] == "[DONE]"
    assert result.body.count(b"[DONE]") == 1
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["choices"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == gemini.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert len({c["id"] for c in chunks}) == 1

    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.quota == expected_quota(11, 7) == world.user.used_quota


def test_stream_usage_chunk_when_the_client_asks(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

    events = world.client.post("/v1/chat/completions", payload).events

    assert events[-1] == "[DONE]"
    usage_chunks = [e for e in events[:-1] if e.get("usage")]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] is events[-2]
    assert usage_chunks[0]["choices"] == []
    assert usage_chunks[0]["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
    }


def test_tool_round_trip_through_the_relay(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    ask = {**CHAT, "tools": [WEATHER_TOOL], "tool_choice": "required"}
    first = world.client.post("/v1/chat/completions", ask)

    assert first.status == 200, first.body
    sent = gemini.last_request
    assert sent.version == "v1beta"  # v1 would refuse the tools
    assert sent.json is not None
    assert sent.json["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    choice = first.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["function"]["name"] == "get_weather"
    assert orjson.loads(call["function"]["arguments"]) == gemini.function_args

    answer = {
        **ask,
        "messages": [
            *CHAT["messages"],
            choice["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "18C and sunny"},
        ],
    }
    second = world.client.post("/v1/chat/completions", answer)

    assert second.status == 200, second.body
    assert gemini.last_request.json is not None
    assert gemini.last_request.json["contents"][-1] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "name": "get_weather",
                    "response": {"name": "get_weather", "content": "18C and sunny"},
                }
            }
        ],
    }
    assert second.json()["choices"][0]["message"]["content"] == gemini.reply


def test_tool_call_stream_through_the_relay(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    events = world.client.post(
        "/v1/chat/completions", {**CHAT, "tools": [WEATHER_TOOL], "stream": True}
    ).events

    calls = [call for e in events[:-1] for call in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert len(calls) == 1
    assert calls[0]["index"] == 0
    assert calls[0]["function"]["name"] == "get_weather"
    assert orjson.loads(calls[0]["function"]["arguments"]) == gemini.function_args
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[-1] == "[DONE]"


def test_thinking_through_the_relay_bills_the_thoughts(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    gemini.scenario = "thinking"

    plain = world.client.post("/v1/chat/completions", CHAT).json()
    streamed = world.client.post("/v1/chat/completions", {**CHAT, "stream": True}).events

    assert plain["choices"][0]["message"]["reasoning_content"] == gemini.thought
    assert plain["choices"][0]["message"]["content"] == gemini.reply
    assert plain["usage"]["completion_tokens"] == 7 + 5
    reasoning = "".join(
        e["choices"][0]["delta"].get("reasoning_content") or "" for e in streamed[:-1]
    )
    assert reasoning == gemini.thought
    world.refresh()
    assert [log.completion_tokens for log in Log.objects.order_by("id")] == [12, 12]


def test_safety_settings_through_the_relay(
    world: World, channel: Channel, gemini: FakeGemini, settings: Any
) -> None:
    settings.GEMINI_SAFETY_SETTING = "BLOCK_MEDIUM_AND_ABOVE"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 200, result.body
    assert gemini.last_request.json is not None
    assert gemini.last_request.json["safetySettings"] == [
        {"category": category, "threshold": "BLOCK_MEDIUM_AND_ABOVE"}
        for category in SAFETY_CATEGORIES
    ]


def test_version_selection_through_the_relay(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    system = {**CHAT, "messages": [{"role": "system", "content": "Be kind."}, *CHAT["messages"]]}

    newer = world.client.post("/v1/chat/completions", {**CHAT, "model": "gemini-2.0-flash"})
    with_system = world.client.post("/v1/chat/completions", system)

    assert (newer.status, with_system.status) == (200, 200)
    assert [(r.version, r.model) for r in gemini.requests] == [
        ("v1beta", "gemini-2.0-flash"),
        ("v1beta", MODEL),
    ]
    assert gemini.requests[1].json is not None
    assert gemini.requests[1].json["systemInstruction"] == {"parts": [{"text": "Be kind."}]}


def test_a_pinned_version_is_used_even_when_google_refuses_it(
    world: World, gemini: FakeGemini
) -> None:
    make_channel(
        type=ChannelType.GEMINI,
        base_url=gemini.base_url,
        key=KEY,
        models=MODEL,
        config='{"api_version": "v1"}',
    )
    system = {**CHAT, "messages": [{"role": "system", "content": "Be kind."}, *CHAT["messages"]]}

    result = world.client.post("/v1/chat/completions", system)

    assert gemini.last_request.version == "v1"
    assert result.status == 400
    assert 'Unknown name "systemInstruction"' in result.json()["error"]["message"]


def test_embeddings_through_the_relay(world: World, channel: Channel, gemini: FakeGemini) -> None:
    payload = {"model": "text-embedding-004", "input": ["one", "two"], "dimensions": 16}

    result = world.client.post("/v1/embeddings", payload)

    assert result.status == 200, result.body
    sent = gemini.last_request
    assert (sent.version, sent.model, sent.action) == (
        "v1",
        "text-embedding-004",
        "batchEmbedContents",
    )
    body = result.json()
    assert body["object"] == "list"
    assert body["model"] == "text-embedding-004"
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert body["data"][1]["embedding"] == gemini_vector("two", 16)
    # Gemini counts no tokens for embeddings: the client gets the counts it was billed by.
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    world.refresh()
    log = Log.objects.get()
    # Without a usage the relay bills the input it counted ("one", "two": a token each).
    ratio = pricing.model_ratio("text-embedding-004", 24)
    assert (log.prompt_tokens, log.completion_tokens) == (2, 0)
    assert log.quota == math.ceil(2 * ratio) > 0


def test_a_blocked_prompt_through_the_relay(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    gemini.scenario = "blocked"

    plain = world.client.post("/v1/chat/completions", CHAT)
    streamed = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert plain.status == 200
    assert plain.json()["choices"][0]["finish_reason"] == "content_filter"
    assert plain.json()["choices"][0]["message"]["content"] == ""
    assert streamed.events[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert streamed.events[-1] == "[DONE]"
    world.refresh()
    assert [(log.prompt_tokens, log.completion_tokens) for log in Log.objects.all()] == [
        (11, 0),
        (11, 0),
    ]


def test_rate_limit_keeps_status_429(world: World, channel: Channel, gemini: FakeGemini) -> None:
    gemini.scenario = "error_429"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 429
    assert "You exceeded your current quota" in result.json()["error"]["message"]
    world.refresh()
    assert Log.objects.count() == 0
    assert world.user.used_quota == 0


@pytest.mark.parametrize(("scenario", "status"), [("error_500", 500), ("error_503", 503)])
def test_server_errors_keep_their_status(
    world: World, channel: Channel, gemini: FakeGemini, scenario: str, status: int
) -> None:
    gemini.scenario = scenario

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == status
    assert result.json()["error"]["message"]


def test_a_wrong_key_is_googles_400(world: World, channel: Channel, gemini: FakeGemini) -> None:
    gemini.api_key = "another-key"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 400
    assert "API key not valid" in result.json()["error"]["message"]


def test_error_event_mid_stream_reaches_the_client(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    gemini.scenario = "error_mid_stream"

    events = world.client.post("/v1/chat/completions", {**CHAT, "stream": True}).events

    assert events[-1]["error"]["code"] == "INTERNAL"
    assert "[DONE]" not in events
    world.refresh()
    assert Log.objects.get().completion_tokens > 0  # billed for what was generated


def test_other_modes_are_refused_for_gemini_channels(
    world: World, channel: Channel, gemini: FakeGemini
) -> None:
    result = world.client.post("/v1/completions", {"model": MODEL, "prompt": "Hello"})

    assert result.status == 400
    assert result.json()["error"]["code"] == "unsupported_mode"
    assert gemini.requests == []
