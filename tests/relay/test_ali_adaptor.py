"""The Ali (DashScope native) adaptor: conversions on DashScope's wire format, the image task
exchange against a fake DashScope, then the relay in-process against it."""

from __future__ import annotations

import asyncio
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
from relay.adaptors.ali import (
    AliAdaptor,
    AliStream,
    image_response,
    sse_error_body,
    task_failure,
)
from relay.adaptors.base import Attempt, OpenAIBody
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from relay.upstream import close_client
from tests.factories import make_channel
from tests.fakes.ali_upstream import PNG_1X1, FakeAli, ali_vector
from tests.relay.conftest import World

MODEL = "qwen-turbo"
KEY = "sk-ali"
ADAPTOR = AliAdaptor()
BASE = "https://dashscope.aliyuncs.com"
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
PNG_URL = "data:image/png;base64,iVBORw0KGgo="


def make_attempt(
    *,
    mode: RelayMode = RelayMode.CHAT,
    stream: bool = False,
    model: str = MODEL,
    base_url: str = "",
    key: str = KEY,
    config: dict[str, object] | None = None,
    client_body: dict[str, Any] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=ChannelType.ALI,
        name="ali",
        key=key,
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


def build(payload: dict[str, Any], **attempt: Any) -> tuple[str, dict[str, str], dict[str, Any]]:
    body = OpenAIBody(orjson.dumps(payload), dict(payload))
    call = ADAPTOR.build_request(make_attempt(**attempt), body)
    return call.url, call.headers, orjson.loads(call.content)


def upstream_body(payload: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    return build(payload, **attempt)[2]


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def translate(response: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    return orjson.loads(ADAPTOR.translate_response(make_attempt(**attempt), orjson.dumps(response)))


# ---------------------------------------------------------------------- chat requests


def test_a_plain_request_goes_to_the_text_service_with_message_results() -> None:
    url, headers, body = build(chat(user("Hi")))

    assert url == f"{BASE}/api/v1/services/aigc/text-generation/generation"
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["Accept"] == "application/json"
    assert "X-DashScope-SSE" not in headers
    assert body == {
        "model": MODEL,
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "parameters": {"result_format": "message"},
    }


def test_a_stream_asks_for_incremental_server_sent_events() -> None:
    url, headers, body = build(chat(user("Hi"), stream=True), stream=True, base_url="http://x/")

    assert url == "http://x/api/v1/services/aigc/text-generation/generation"
    assert headers["X-DashScope-SSE"] == "enable"
    assert headers["Accept"] == "text/event-stream"
    assert body["parameters"] == {"result_format": "message", "incremental_output": True}


def test_the_internet_suffix_turns_on_search_and_the_plugin_header_comes_from_config() -> None:
    _, headers, body = build(
        chat(user("News?"), model="qwen-max-internet"),
        model="qwen-max-internet",
        config={"plugin": '{"pdf_extracter": {}}'},
    )

    assert body["model"] == "qwen-max"
    assert body["parameters"]["enable_search"] is True
    assert headers["X-DashScope-Plugin"] == '{"pdf_extracter": {}}'


def test_sampling_parameters_are_clamped_into_dashscopes_ranges() -> None:
    parameters = upstream_body(
        chat(
            user("x"),
            temperature=2,
            top_p=1,
            presence_penalty=3,
            max_tokens=64,
            seed=2**31 + 5,
            stop="END",
            n=2,
            top_k=40,
            response_format={"type": "json_object"},
            frequency_penalty=1,  # no DashScope counterpart: dropped
            user="someone",
        )
    )["parameters"]

    assert parameters == {
        "result_format": "message",
        "temperature": 1.99,
        "top_p": 0.9999,
        "presence_penalty": 2.0,
        "max_tokens": 64,
        "seed": 5,
        "stop": ["END"],
        "n": 2,
        "top_k": 40,
        "response_format": {"type": "json_object"},
    }
    low = upstream_body(chat(user("x"), temperature=-1, top_p=0, max_completion_tokens=9))
    assert low["parameters"] | {} == {
        "result_format": "message",
        "temperature": 0.0,
        "top_p": 0.0001,
        "max_tokens": 9,
    }


def test_system_developer_tool_calls_and_results() -> None:
    messages = upstream_body(
        chat(
            {"role": "developer", "content": "Be brief."},
            user([{"type": "text", "text": "Weather"}, {"type": "text", "text": "in Paris?"}]),
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
            {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
        )
    )["input"]["messages"]

    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather\nin Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "content": "22C", "tool_call_id": "call_1", "name": "get_weather"},
    ]


def test_tools_and_legacy_functions_become_parameters_tools() -> None:
    tools = upstream_body(chat(user("x"), tools=[WEATHER_TOOL]))["parameters"]["tools"]
    functions = upstream_body(chat(user("x"), functions=[WEATHER_TOOL["function"]]))

    assert tools == [WEATHER_TOOL]
    assert functions["parameters"]["tools"] == [WEATHER_TOOL]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", {"type": "function", "function": {"name": "get_weather"}}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: Any) -> None:
    parameters = upstream_body(chat(user("x"), tools=[WEATHER_TOOL], tool_choice=choice))
    assert parameters["parameters"]["tool_choice"] == expected


def test_required_with_several_tools_is_refused() -> None:
    other = {"type": "function", "function": {"name": "get_time", "parameters": {}}}
    with pytest.raises(RelayError) as caught:
        upstream_body(chat(user("x"), tools=[WEATHER_TOOL, other], tool_choice="required"))
    assert caught.value.status == 400


def test_images_go_to_the_multimodal_service_as_items() -> None:
    url, _, body = build(
        chat(
            {"role": "system", "content": "Describe."},
            user(
                [
                    {"type": "image_url", "image_url": {"url": "https://img.example/cat.png"}},
                    {"type": "image_url", "image_url": {"url": PNG_URL}},
                    {"type": "text", "text": "What is this?"},
                ]
            ),
            model="qwen-vl-max",
        ),
        model="qwen-vl-max",
    )

    assert url.endswith("/api/v1/services/aigc/multimodal-generation/generation")
    assert body["input"]["messages"] == [
        {"role": "system", "content": [{"text": "Describe."}]},
        {
            "role": "user",
            "content": [
                {"image": "https://img.example/cat.png"},
                {"image": PNG_URL},
                {"text": "What is this?"},
            ],
        },
    ]


def test_a_vl_model_uses_the_multimodal_service_for_text_too() -> None:
    url, _, body = build(chat(user("Hi"), model="qwen-vl-plus"), model="qwen-vl-plus")
    assert "multimodal-generation" in url
    assert body["input"]["messages"] == [{"role": "user", "content": [{"text": "Hi"}]}]


def test_unknown_content_parts_are_a_client_error() -> None:
    with pytest.raises(RelayError) as caught:
        upstream_body(chat(user([{"type": "file", "file": {"file_id": "f"}}])))
    assert (caught.value.status, caught.value.code) == (400, "unsupported_content")


# ---------------------------------------------------------------------- other modes


def test_embeddings_request() -> None:
    url, _, body = build(
        {"model": "text-embedding-v3", "input": ["a", "b"], "dimensions": 512},
        mode=RelayMode.EMBEDDINGS,
        model="text-embedding-v3",
    )
    assert url == f"{BASE}/api/v1/services/embeddings/text-embedding/text-embedding"
    assert body == {
        "model": "text-embedding-v3",
        "input": {"texts": ["a", "b"]},
        "parameters": {"dimension": 512},
    }
    single = upstream_body({"input": "one"}, mode=RelayMode.EMBEDDINGS, model="text-embedding-v1")
    assert single == {"model": "text-embedding-v1", "input": {"texts": ["one"]}}
    with pytest.raises(RelayError):
        upstream_body({"input": [[1, 2]]}, mode=RelayMode.EMBEDDINGS)


def test_image_request_is_an_asynchronous_task() -> None:
    url, headers, body = build(
        {"model": "wanx-v1", "prompt": "A cat", "n": 2, "size": "1280x720", "style": "<anime>"},
        mode=RelayMode.IMAGES_GENERATIONS,
        model="wanx-v1",
    )
    assert url == f"{BASE}/api/v1/services/aigc/text2image/image-synthesis"
    assert headers["X-DashScope-Async"] == "enable"
    assert body == {
        "model": "wanx-v1",
        "input": {"prompt": "A cat"},
        "parameters": {"size": "1280*720", "n": 2, "style": "<anime>"},
    }


@pytest.mark.parametrize(
    "mode", [RelayMode.COMPLETIONS, RelayMode.MODERATIONS, RelayMode.AUDIO_SPEECH]
)
def test_other_modes_and_multipart_are_refused(mode: RelayMode) -> None:
    with pytest.raises(RelayError) as caught:
        upstream_body({"model": MODEL, "prompt": "x", "input": "x"}, mode=mode)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")
    with pytest.raises(RelayError):
        ADAPTOR.build_raw_request(make_attempt(mode=RelayMode.IMAGES_EDITS), b"", "multipart/x")


def test_ali_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.ALI), AliAdaptor)


# ---------------------------------------------------------------------- responses


def answer(message: dict[str, Any], finish: str = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "output": {"choices": [{"finish_reason": finish, "message": message}]},
        "usage": {"input_tokens": 20, "output_tokens": 5, "total_tokens": 25},
        "request_id": "b3a4-77",
        **extra,
    }


def test_text_response_and_usage() -> None:
    result = translate(answer({"role": "assistant", "content": "Hello!"}))

    assert result["id"] == "chatcmpl-b3a4-77"
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
    assert result["usage"] == {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


def test_tool_calls_reasoning_and_multimodal_content() -> None:
    calls = [
        {
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
            "index": 0,
            "id": "call_9",
            "type": "function",
        }
    ]
    called = translate(
        answer({"role": "assistant", "content": "", "tool_calls": calls}, "tool_calls")
    )
    thought = translate(answer({"role": "assistant", "content": "4", "reasoning_content": "2+2"}))
    seen = translate(answer({"role": "assistant", "content": [{"text": "A "}, {"text": "cat."}]}))

    assert called["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_9",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
            }
        ],
    }
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    assert thought["choices"][0]["message"]["reasoning_content"] == "2+2"
    assert seen["choices"][0]["message"]["content"] == "A cat."


@pytest.mark.parametrize(("reason", "finish"), [("stop", "stop"), ("length", "length")])
def test_finish_reasons(reason: str, finish: str) -> None:
    result = translate(answer({"role": "assistant", "content": "x"}, reason))
    assert result["choices"][0]["finish_reason"] == finish


def test_several_choices_keep_their_indexes() -> None:
    data = answer({"role": "assistant", "content": "a"})
    data["output"]["choices"] = [
        {"index": 1, "finish_reason": "stop", "message": {"role": "assistant", "content": "b"}},
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "a"}},
    ]
    assert [c["index"] for c in translate(data)["choices"]] == [1, 0]


def test_an_error_body_fails_the_attempt() -> None:
    body = {"code": "DataInspectionFailed", "message": "Bad input", "request_id": "r"}
    with pytest.raises(UpstreamFailure) as caught:
        translate(body)
    assert caught.value.error.message == "Bad input"
    assert caught.value.error.code == "DataInspectionFailed"


def test_embeddings_response_in_floats_and_base64() -> None:
    data = {
        "output": {
            "embeddings": [
                {"text_index": 1, "embedding": [0.5, -0.25]},
                {"text_index": 0, "embedding": [1.0, 0.0]},
            ]
        },
        "usage": {"total_tokens": 4},
        "request_id": "r",
    }
    plain = translate(data, mode=RelayMode.EMBEDDINGS, model="text-embedding-v1")
    encoded = translate(
        data,
        mode=RelayMode.EMBEDDINGS,
        model="text-embedding-v1",
        client_body={"encoding_format": "base64"},
    )

    assert plain == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
            {"object": "embedding", "index": 1, "embedding": [0.5, -0.25]},
        ],
        "model": "text-embedding-v1",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    vector = base64.b64decode(encoded["data"][1]["embedding"])
    assert struct.unpack("<2f", vector) == (0.5, -0.25)


def test_non_json_bodies_pass_through() -> None:
    attempt = make_attempt()
    assert ADAPTOR.translate_response(attempt, b"not json") == b"not json"


def test_image_task_results_become_openai_images() -> None:
    task = {
        "output": {
            "task_id": "t",
            "task_status": "SUCCEEDED",
            "results": [
                {"url": "https://oss/1.png", "actual_prompt": "A cute cat"},
                {"code": "DataInspectionFailed", "message": "filtered"},
                {"url": "https://oss/2.png"},
            ],
        }
    }
    urls = image_response(task)
    b64 = image_response(task, ["QUJD", "REVG"])

    assert urls["data"] == [
        {"url": "https://oss/1.png", "revised_prompt": "A cute cat"},
        {"url": "https://oss/2.png"},
    ]
    assert isinstance(urls["created"], int)
    assert b64["data"] == [
        {"b64_json": "QUJD", "revised_prompt": "A cute cat"},
        {"b64_json": "REVG"},
    ]


def test_failed_tasks_keep_their_code() -> None:
    internal = task_failure(
        {"output": {"task_status": "FAILED", "code": "InternalError", "message": "boom"}}
    )
    refused = task_failure(
        {"output": {"task_status": "FAILED", "code": "DataInspectionFailed", "message": "no"}}
    )

    assert (internal.error.status, internal.error.code, internal.retryable) == (
        500,
        "InternalError",
        True,
    )
    assert (refused.error.status, refused.retryable) == (400, False)


def test_the_error_of_a_failed_sse_answer() -> None:
    body = b'id:1\nevent:error\n:HTTP_STATUS/401\ndata:{"code":"InvalidApiKey","message":"no"}\n\n'
    assert orjson.loads(sse_error_body(body)) == {"code": "InvalidApiKey", "message": "no"}
    assert sse_error_body(b'{"code":"x"}') == b'{"code":"x"}'


# ---------------------------------------------------------------------- stream


def event_lines(n: int, data: dict[str, Any], event: str = "result", status: int = 200) -> list:
    return [
        f"id:{n}".encode(),
        f"event:{event}".encode(),
        f":HTTP_STATUS/{status}".encode(),
        b"data:" + orjson.dumps(data),
        b"",
    ]


def result_event(message: dict[str, Any], finish: str = "null", output_tokens: int = 1) -> dict:
    return {
        "output": {"choices": [{"message": message, "finish_reason": finish}]},
        "usage": {
            "input_tokens": 20,
            "output_tokens": output_tokens,
            "total_tokens": 20 + output_tokens,
        },
        "request_id": "req-1",
    }


def feed(translator: AliStream, *events: dict[str, Any], kind: str = "result") -> list[Any]:
    out: list[Any] = []
    for n, data in enumerate(events, start=1):
        for line in event_lines(n, data, kind):
            frame = translator.accept(line)
            if frame is None:
                continue
            for block in frame.split(b"\n\n"):
                if block.startswith(b"data: "):
                    payload = block[6:]
                    out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def deltas(frames: list[Any]) -> list[dict[str, Any]]:
    return [f["choices"][0]["delta"] for f in frames if isinstance(f, dict) and f["choices"]]


def test_text_stream_event_by_event() -> None:
    translator = AliStream(client_wants_usage=False, model=MODEL)
    frames = feed(
        translator,
        result_event({"role": "assistant", "content": "Hel"}),
        result_event({"role": "assistant", "content": "lo"}, output_tokens=2),
        result_event({"role": "assistant", "content": "!"}, "stop", output_tokens=3),
    )

    assert deltas(frames) == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {"content": "!"},
    ]
    assert frames[-2]["choices"][0]["finish_reason"] == "stop"
    assert frames[-1] == "[DONE]"
    assert {f["id"] for f in frames[:-1]} == {"chatcmpl-req-1"}
    assert all(f["object"] == "chat.completion.chunk" for f in frames[:-1])
    assert translator.saw_done
    assert translator.usage == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    assert translator.generated_text == "Hello!"


def test_usage_chunk_before_done_only_when_asked() -> None:
    translator = AliStream(client_wants_usage=True, model=MODEL)
    frames = feed(translator, result_event({"role": "assistant", "content": "Hi"}, "stop", 4))

    assert frames[-1] == "[DONE]"
    assert frames[-2]["choices"] == []
    assert frames[-2]["usage"] == {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}


def test_tool_call_stream() -> None:
    translator = AliStream(client_wants_usage=False, model=MODEL)
    first = {
        "index": 0,
        "id": "call_7",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":'},
    }
    rest = {"index": 0, "id": "", "function": {"arguments": ' "Paris"}'}}
    frames = feed(
        translator,
        result_event({"role": "assistant", "content": "", "tool_calls": [first]}),
        result_event({"role": "assistant", "content": "", "tool_calls": [rest]}),
        result_event({"role": "assistant", "content": ""}, "tool_calls"),
    )

    calls = [call for d in deltas(frames) for call in d.get("tool_calls") or ()]
    assert calls == [
        {
            "index": 0,
            "id": "call_7",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":'},
        },
        {"index": 0, "function": {"arguments": ' "Paris"}'}},
    ]
    assert frames[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert translator.generated_text == 'get_weather{"location": "Paris"}'


def test_reasoning_and_multimodal_increments() -> None:
    translator = AliStream(client_wants_usage=False, model="qwen-vl-max")
    frames = feed(
        translator,
        result_event({"role": "assistant", "content": [], "reasoning_content": "Look."}),
        result_event({"role": "assistant", "content": [{"text": "A cat."}]}, "stop"),
    )
    assert deltas(frames) == [
        {"role": "assistant", "reasoning_content": "Look.", "content": ""},
        {"content": "A cat."},
    ]


def test_an_error_event_becomes_an_openai_error_frame() -> None:
    translator = AliStream(client_wants_usage=False, model=MODEL)
    feed(translator, result_event({"role": "assistant", "content": "Hi"}))
    error = {"code": "InternalError", "message": "Internal server error!", "request_id": "r"}

    frames = feed(translator, error, kind="error")

    assert frames == [
        {
            "error": {
                "message": "Internal server error!",
                "type": "upstream_error",
                "param": None,
                "code": "InternalError",
            }
        }
    ]
    assert translator.upstream_error is not None
    assert not translator.saw_done


def test_several_choices_finish_when_all_have() -> None:
    translator = AliStream(client_wants_usage=False, model=MODEL, choices=2)
    one = result_event({"role": "assistant", "content": "A"}, "stop")
    one["output"]["choices"][0]["index"] = 0
    two = result_event({"role": "assistant", "content": "B"}, "stop")
    two["output"]["choices"][0]["index"] = 1

    assert "[DONE]" not in feed(translator, one)
    assert feed(translator, two)[-1] == "[DONE]"


def test_the_choice_count_comes_from_the_clients_n() -> None:
    attempt = make_attempt(stream=True, client_body=chat(user("x"), n=3, stream=True))
    translator = ADAPTOR.stream_translator(attempt, client_wants_usage=False)
    assert isinstance(translator, AliStream)
    assert translator.choices == 3


# ---------------------------------------------------------------------- the fake upstream


@pytest.fixture
def ali() -> Iterator[FakeAli]:
    with FakeAli(api_key=KEY) as fake:
        yield fake


def post_fake(fake: FakeAli, path: str, payload: Any, **headers: str) -> httpx.Response:
    sent = {"Authorization": f"Bearer {KEY}", **headers}
    return httpx.post(f"{fake.base_url}{path}", json=payload, headers=sent)


TEXT = "/api/v1/services/aigc/text-generation/generation"
GOOD = {"model": MODEL, "input": {"messages": [{"role": "user", "content": "Hi"}]}}


@pytest.mark.parametrize(
    ("payload", "headers", "status", "code"),
    [
        (GOOD, {"Authorization": "Bearer wrong"}, 401, "InvalidApiKey"),
        ({**GOOD, "model": "qwen-max-internet"}, {}, 400, "InvalidParameter"),
        ({**GOOD, "model": "qwen-vl-max"}, {}, 400, "InvalidParameter"),
        ({**GOOD, "parameters": {"temperature": 2}}, {}, 400, "InvalidParameter"),
        ({**GOOD, "parameters": {"frequency_penalty": 1}}, {}, 400, "InvalidParameter"),
        ({**GOOD, "parameters": {"incremental_output": True}}, {}, 400, "InvalidParameter"),
        (
            {"model": MODEL, "input": {"messages": [{"role": "user", "content": [{"text": "x"}]}]}},
            {},
            400,
            "InvalidParameter",
        ),
    ],
)
def test_the_fake_is_as_strict_as_dashscope(
    ali: FakeAli, payload: Any, headers: dict[str, str], status: int, code: str
) -> None:
    response = post_fake(ali, TEXT, payload, **headers)
    assert response.status_code == status
    assert response.json()["code"] == code


def test_the_fake_frames_errors_as_sse_for_sse_requests(ali: FakeAli) -> None:
    response = post_fake(
        ali, TEXT, GOOD, Authorization="Bearer wrong", **{"X-DashScope-SSE": "enable"}
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/event-stream")
    assert b"event:error" in response.content


def run(coroutine: Any) -> Any:
    async def main() -> Any:
        try:
            return await coroutine
        finally:
            await close_client()

    return asyncio.run(main())


def image_attempt(ali: FakeAli, **client: Any) -> Attempt:
    payload = {"model": "wanx-v1", "prompt": "A cat", **client}
    return make_attempt(
        mode=RelayMode.IMAGES_GENERATIONS,
        model="wanx-v1",
        base_url=ali.base_url,
        client_body=payload,
    )


def image_task(ali: FakeAli, adaptor: AliAdaptor, **client: Any) -> httpx.Response:
    attempt = image_attempt(ali, **client)
    payload = orjson.loads(attempt.request.body)
    call = adaptor.build_request(attempt, OpenAIBody(attempt.request.body, payload))

    async def exchange() -> httpx.Response:
        response = await adaptor.send(attempt, call)
        await response.aread()
        return response

    return run(exchange())


@pytest.fixture
def quick() -> AliAdaptor:
    adaptor = AliAdaptor()
    adaptor.poll_interval = 0.01
    adaptor.task_timeout = 5.0
    return adaptor


def test_an_image_task_is_polled_until_it_succeeds(ali: FakeAli, quick: AliAdaptor) -> None:
    response = image_task(ali, quick, n=2)

    assert response.status_code == 200
    body = response.json()
    assert len(body["data"]) == 2
    assert all(item["url"].startswith(f"{ali.base_url}/images/") for item in body["data"])
    paths = [(r.method, r.path.split("/")[3]) for r in ali.requests]
    assert paths == [("POST", "services"), ("GET", "tasks"), ("GET", "tasks"), ("GET", "tasks")]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in ali.requests)


def test_b64_json_fetches_the_images(ali: FakeAli, quick: AliAdaptor) -> None:
    body = image_task(ali, quick, response_format="b64_json").json()
    assert [base64.b64decode(item["b64_json"]) for item in body["data"]] == [PNG_1X1]
    assert ali.requests[-1].path.startswith("/images/")


def test_a_failed_task_fails_the_attempt(ali: FakeAli, quick: AliAdaptor) -> None:
    ali.scenario = "image_failed"
    with pytest.raises(UpstreamFailure) as caught:
        image_task(ali, quick)
    assert caught.value.error.code == "InternalError.Algo"
    assert caught.value.error.status == 500


def test_a_task_that_never_ends_times_out(ali: FakeAli, quick: AliAdaptor) -> None:
    ali.scenario = "image_slow"
    quick.task_timeout = 0.1
    with pytest.raises(UpstreamFailure) as caught:
        image_task(ali, quick)
    assert (caught.value.error.status, caught.value.error.code) == (504, "ali_task_timeout")
    assert not caught.value.retryable
    polls = [r for r in ali.requests if r.method == "GET"]
    assert 1 <= len(polls) <= 20  # bounded by the timeout, not a busy loop


def test_a_refused_submission_fails_with_dashscopes_message(
    ali: FakeAli, quick: AliAdaptor
) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        image_task(ali, quick, size="999x999")
    assert caught.value.error.status == 400
    assert caught.value.error.message == "size is invalid"


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def channel(world: World, ali: FakeAli) -> Channel:
    return make_channel(
        type=ChannelType.ALI,
        base_url=ali.base_url,
        key=KEY,
        models="qwen-turbo,qwen-max-internet,qwen-vl-max,text-embedding-v1,wanx-v1",
    )


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}


def expected_quota(prompt: int, completion: int, model: str = MODEL) -> int:
    ratio = pricing.model_ratio(model, ChannelType.ALI)
    completion_ratio = pricing.completion_ratio(model, ChannelType.ALI)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_chat_is_converted_both_ways_and_billed_from_usage(
    world: World, channel: Channel, ali: FakeAli
) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "temperature": 0.3})

    assert result.status == 200, result.body
    sent = ali.last_request
    assert sent.path == TEXT
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "model": MODEL,
        "input": {"messages": [{"role": "user", "content": "Hello there"}]},
        "parameters": {"result_format": "message", "temperature": 0.3},
    }
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": ali.reply}
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    assert world.upstream.requests == []

    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.channel_id == channel.pk
    assert log.quota == expected_quota(11, 7) == world.user.used_quota


def test_stream_is_converted_and_billed_from_usage(
    world: World, channel: Channel, ali: FakeAli
) -> None:
    result = world.client.post(
        "/v1/chat/completions",
        {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    )

    assert result.status == 200, result.body
    assert result.headers["content-type"] == "text/event-stream"
    assert ali.last_request.headers["x-dashscope-sse"] == "enable"
    assert ali.last_request.json is not None
    assert ali.last_request.json["parameters"]["incremental_output"] is True
    events = result.events
    assert events[-1] == "[DONE]"
    assert result.body.count(b"[DONE]") == 1
    chunks = [e for e in events[:-1] if e["choices"]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == ali.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-2]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}

    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.quota == expected_quota(11, 7)


def test_tool_round_trip_through_the_relay(world: World, channel: Channel, ali: FakeAli) -> None:
    ask = {**CHAT, "tools": [WEATHER_TOOL]}
    first = world.client.post("/v1/chat/completions", ask).json()
    (call,) = first["choices"][0]["message"]["tool_calls"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": ali.function_args}

    answer_messages = [
        *CHAT["messages"],
        first["choices"][0]["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "22C"},
    ]
    second = world.client.post("/v1/chat/completions", {**ask, "messages": answer_messages})

    assert second.status == 200, second.body
    assert second.json()["choices"][0]["message"]["content"] == ali.reply
    sent = ali.last_request.json
    assert sent is not None
    assert sent["input"]["messages"][-1] == {
        "role": "tool",
        "content": "22C",
        "tool_call_id": call["id"],
        "name": "get_weather",
    }


def test_streamed_tool_call_through_the_relay(world: World, channel: Channel, ali: FakeAli) -> None:
    events = world.client.post(
        "/v1/chat/completions", {**CHAT, "tools": [WEATHER_TOOL], "stream": True}
    ).events

    calls = [c for e in events[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"].get("arguments", "") for c in calls) == ali.function_args
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_search_and_images_through_the_relay(world: World, channel: Channel, ali: FakeAli) -> None:
    searched = world.client.post("/v1/chat/completions", {**CHAT, "model": "qwen-max-internet"})
    assert searched.status == 200, searched.body
    assert ali.last_request.json is not None
    assert ali.last_request.json["model"] == "qwen-max"
    assert ali.last_request.json["parameters"]["enable_search"] is True
    assert searched.json()["model"] == "qwen-max-internet"

    vision = {
        "model": "qwen-vl-max",
        "messages": [
            user(
                [
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                    {"type": "text", "text": "What?"},
                ]
            )
        ],
    }
    seen = world.client.post("/v1/chat/completions", vision)
    assert seen.status == 200, seen.body
    assert ali.last_request.path.endswith("/multimodal-generation/generation")
    assert seen.json()["choices"][0]["message"]["content"] == ali.reply


def test_embeddings_through_the_relay(world: World, channel: Channel, ali: FakeAli) -> None:
    payload = {"model": "text-embedding-v1", "input": ["one two", "three"]}

    result = world.client.post("/v1/embeddings", payload)

    assert result.status == 200, result.body
    assert ali.last_request.json == {
        "model": "text-embedding-v1",
        "input": {"texts": ["one two", "three"]},
    }
    body = result.json()
    assert [item["index"] for item in body["data"]] == [0, 1]
    assert body["data"][1]["embedding"] == ali_vector("three")
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (3, 0)
    ratio = pricing.model_ratio("text-embedding-v1", ChannelType.ALI)
    assert log.quota == math.ceil(3 * ratio)


def test_image_task_through_the_relay(
    world: World, channel: Channel, ali: FakeAli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adaptor_for(ChannelType.ALI), "poll_interval", 0.01)

    result = world.client.post(
        "/v1/images/generations",
        {"model": "wanx-v1", "prompt": "A cat", "n": 2, "size": "1024x1024"},
    )

    assert result.status == 200, result.body
    body = result.json()
    assert len(body["data"]) == 2
    assert all(item["url"].startswith(f"{ali.base_url}/images/") for item in body["data"])
    submitted = ali.requests[0]
    assert submitted.headers["x-dashscope-async"] == "enable"
    assert submitted.json is not None
    assert submitted.json["parameters"] == {"size": "1024*1024", "n": 2}
    world.refresh()
    log = Log.objects.get()
    ratio = pricing.model_ratio("wanx-v1", ChannelType.ALI)
    assert log.quota == int(ratio * 1000) * 2


def test_a_bad_key_keeps_status_and_message(world: World, ali: FakeAli) -> None:
    make_channel(type=ChannelType.ALI, base_url=ali.base_url, key="sk-wrong", models=MODEL)

    plain = world.client.post("/v1/chat/completions", CHAT)
    streamed = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    for result in (plain, streamed):
        assert result.status == 401
        assert result.json()["error"]["message"].startswith("Invalid API-key provided.")
    world.refresh()
    assert Log.objects.count() == 0
    assert world.user.used_quota == 0


@pytest.mark.parametrize(
    ("scenario", "status", "message"),
    [
        ("error_429", 429, "Requests rate limit exceeded."),
        ("error_500", 500, "An internal error has occured"),
        ("data_inspection", 400, "Input data may contain bad content."),
    ],
)
def test_errors_keep_their_status(
    world: World, channel: Channel, ali: FakeAli, scenario: str, status: int, message: str
) -> None:
    ali.scenario = scenario

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == status
    assert message in result.json()["error"]["message"]
    world.refresh()
    assert Log.objects.count() == 0


def test_an_error_mid_stream_reaches_the_client(
    world: World, channel: Channel, ali: FakeAli
) -> None:
    ali.scenario = "error_mid_stream"

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200
    assert result.events[-1]["error"]["message"] == "Internal server error!"
    assert b"[DONE]" not in result.body
