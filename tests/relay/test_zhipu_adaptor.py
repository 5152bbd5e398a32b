"""The Zhipu adaptor: JWT signing, conversions on Zhipu's wire format, then the relay
against a fake open.bigmodel.cn that verifies every token with PyJWT."""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import orjson
import pytest

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from relay.adaptors import adaptor_for, zhipu
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.token_cache import TokenCache
from relay.adaptors.zhipu import (
    ZhipuAdaptor,
    ZhipuStream,
    ZhipuV3Stream,
    auth_token,
    convert_chat_request,
    convert_embedding_request,
    convert_embedding_response,
    convert_image_request,
    convert_response,
    convert_v3_request,
    convert_v3_response,
    sign_token,
)
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from tests.factories import make_channel
from tests.fakes.zhipu_upstream import FakeZhipu, zhipu_vector
from tests.relay.conftest import World

# Made up, with a 32-character secret (PyJWT warns about shorter HMAC keys).
KEY_ID = "0123456789abcdef0123456789abcdef"
SECRET = "AbCdEfGhIjKlMnOpQrStUvWxYz012345"
KEY = f"{KEY_ID}.{SECRET}"
MODEL = "glm-4"
ADAPTOR = ZhipuAdaptor()
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


@pytest.fixture(autouse=True)
def fresh_tokens() -> Iterator[None]:
    zhipu.reset_tokens()
    yield
    zhipu.reset_tokens()


def make_attempt(
    *,
    mode: RelayMode = RelayMode.CHAT,
    model: str = MODEL,
    stream: bool = False,
    base_url: str = "",
    key: str = KEY,
    client_body: dict[str, Any] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=ChannelType.ZHIPU,
        name="zhipu",
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


def decode_segment(segment: str) -> Any:
    return orjson.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


# ---------------------------------------------------------------------- the JWT


def test_token_is_byte_for_byte_zhipus_documented_pyjwt_example() -> None:
    """Zhipu's docs sign with `jwt.encode(payload, secret, algorithm="HS256",
    headers={"alg": "HS256", "sign_type": "SIGN"})`; PyJWT adds `typ`, which One API's Go
    library adds too and Zhipu ignores. Without it, the tokens are identical."""
    now_ms = 1_717_171_717_171
    payload = {"api_key": KEY_ID, "exp": now_ms + 24 * 3600 * 1000, "timestamp": now_ms}

    ours = sign_token(KEY, now_ms)

    documented = jwt.encode(
        payload, SECRET, algorithm="HS256", headers={"alg": "HS256", "sign_type": "SIGN"}
    )
    assert jwt.get_unverified_header(documented) == {**zhipu.JWT_HEADER, "typ": "JWT"}
    assert jwt.decode(documented, SECRET, algorithms=["HS256"], options={"verify_exp": False}) == (
        jwt.decode(ours, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    )
    without_typ = jwt.encode(
        payload,
        SECRET,
        algorithm="HS256",
        headers={"alg": "HS256", "sign_type": "SIGN", "typ": None},
    )
    assert ours == without_typ


def test_token_structure_claims_and_signature() -> None:
    now_ms = int(time.time() * 1000)
    token = sign_token(KEY, now_ms)

    header, claims, _signature = token.split(".")
    assert decode_segment(header) == {"alg": "HS256", "sign_type": "SIGN"}
    assert decode_segment(claims) == {
        "api_key": KEY_ID,
        "exp": now_ms + 86_400_000,  # One API's 24 hours, in milliseconds
        "timestamp": now_ms,
    }
    verified = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert verified["api_key"] == KEY_ID
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another-secret-another-secret-xx", algorithms=["HS256"])


@pytest.mark.parametrize("key", ["no-dot", "a.b.c", ".secret", "id."])
def test_malformed_keys_fail_the_channel(key: str) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        sign_token(key, 0)
    assert caught.value.error.status == 401
    assert caught.value.error.code == "invalid_channel_key"


def test_token_is_cached_per_key_and_re_signed_shortly_before_expiry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    cache = TokenCache(zhipu.TOKEN_REFRESH_MARGIN_SECONDS, clock=lambda: clock[0])
    monkeypatch.setattr(zhipu, "_tokens", cache)

    first = auth_token(KEY)
    time.sleep(0.002)
    assert auth_token(KEY) == first
    other = auth_token(f"other-id.{SECRET}")
    assert other != first
    assert decode_segment(other.split(".")[1])["api_key"] == "other-id"

    clock[0] = 24 * 3600 - zhipu.TOKEN_REFRESH_MARGIN_SECONDS - 1
    assert auth_token(KEY) == first
    clock[0] += 2  # inside the margin: a new token although the old one has not expired
    renewed = auth_token(KEY)
    assert renewed != first
    claims = jwt.decode(renewed, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims["exp"] - claims["timestamp"] == 86_400_000


def test_headers_carry_the_bare_jwt() -> None:
    request = ADAPTOR.build_request(make_attempt(), OpenAIBody(b"{}", {"messages": []}))
    token = request.headers["Authorization"]
    assert not token.startswith("Bearer")
    assert jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert request.headers["Accept"] == "application/json"


# ---------------------------------------------------------------------- requests


def test_v4_request_keeps_zhipus_fields_only_and_clamps_sampling() -> None:
    payload = {
        "model": MODEL,
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "bob"},
        ],
        "temperature": 1.7,
        "top_p": 1,
        "max_completion_tokens": 100,
        "stop": ["\n\n", "END"],
        "n": 1,
        "stream_options": {"include_usage": True},
        "presence_penalty": 0.5,
        "parallel_tool_calls": False,
        "user": "user-123456",
        "response_format": {"type": "json_object"},
    }

    body = convert_chat_request(payload, "glm-4-plus", stream=True)

    assert body == {
        "model": "glm-4-plus",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},  # text-only parts: a string for text models
        ],
        "stream": True,
        "temperature": 1.0,
        "top_p": 0.99,  # Zhipu's top_p is open at 1
        "max_tokens": 100,
        "stop": ["\n\n"],  # Zhipu takes one stop word
        "response_format": {"type": "json_object"},
        "user_id": "user-123456",
    }


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [
        ({"temperature": 0}, {"do_sample": False}),  # greedy: Zhipu's own switch
        ({"temperature": 0, "top_p": 0.5}, {"do_sample": False}),
        ({"temperature": 0.001, "top_p": 0}, {"temperature": 0.01, "top_p": 0.01}),
        ({"temperature": 0.7, "top_p": 0.9}, {"temperature": 0.7, "top_p": 0.9}),
        ({"temperature": True}, {}),
    ],
)
def test_sampling_ranges(sampling: dict[str, Any], expected: dict[str, Any]) -> None:
    body = convert_chat_request({"messages": [], **sampling}, MODEL, stream=False)
    assert {k: body[k] for k in ("do_sample", "temperature", "top_p") if k in body} == expected


def test_tools_are_passed_with_auto_choice_and_none_drops_them() -> None:
    messages = [{"role": "user", "content": "Weather?"}]
    forced = {"type": "function", "function": {"name": "get_weather"}}

    body = convert_chat_request(
        {"messages": messages, "tools": [WEATHER_TOOL], "tool_choice": forced}, MODEL, False
    )
    assert body["tools"] == [WEATHER_TOOL]
    assert body["tool_choice"] == "auto"  # the only choice Zhipu offers
    none = convert_chat_request(
        {"messages": messages, "tools": [WEATHER_TOOL], "tool_choice": "none"}, MODEL, False
    )
    assert "tools" not in none and "tool_choice" not in none
    legacy = convert_chat_request(
        {"messages": messages, "functions": [WEATHER_TOOL["function"]]}, MODEL, False
    )
    assert legacy["tools"] == [WEATHER_TOOL]


def test_tool_history_is_kept() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"北京"}'},
    }
    messages = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "晴, 25℃"},
    ]

    body = convert_chat_request({"messages": messages}, MODEL, False)

    assert body["messages"][1] == {"role": "assistant", "content": "", "tool_calls": [call]}
    assert body["messages"][2] == {"role": "tool", "content": "晴, 25℃", "tool_call_id": "call_1"}


def test_images_lose_the_data_url_prefix() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]

    body = convert_chat_request(
        {"messages": [{"role": "user", "content": content}]}, "glm-4v", False
    )

    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


def test_n_above_one_is_refused() -> None:
    with pytest.raises(RelayError) as caught:
        convert_chat_request({"messages": [], "n": 2}, MODEL, False)
    assert caught.value.status == 400


def test_v3_request_is_a_prompt_of_text_turns() -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
        ],
        "temperature": 0,
        "top_p": 1.0,
        "max_tokens": 10,
    }

    assert convert_v3_request(payload, stream=True) == {
        "prompt": [
            {"role": "user", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "How are you?"},
        ],
        "temperature": 0.01,
        "top_p": 0.99,
        "incremental": True,
    }


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER_TOOL]},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
    ],
)
def test_v3_refuses_tools_and_images(payload: dict[str, Any]) -> None:
    with pytest.raises(RelayError) as caught:
        convert_v3_request(payload, stream=False)
    assert caught.value.status == 400


def test_embedding_requests() -> None:
    assert convert_embedding_request({"input": ["one"]}, "embedding-2") == {
        "model": "embedding-2",
        "input": "one",
    }
    assert convert_embedding_request({"input": ["a", "b"], "dimensions": 256}, "embedding-3") == {
        "model": "embedding-3",
        "input": ["a", "b"],
        "dimensions": 256,
    }
    for payload, model in (({"input": ["a", "b"]}, "embedding-2"), ({"input": [[1, 2]]}, "x")):
        with pytest.raises(RelayError) as caught:
            convert_embedding_request(payload, model)
        assert caught.value.status == 400


def test_image_requests() -> None:
    payload = {"prompt": "a cat", "size": "1024x1024", "n": 1, "user": "user-123456"}
    assert convert_image_request(payload, "cogview-3") == {
        "model": "cogview-3",
        "prompt": "a cat",
        "size": "1024x1024",
        "user_id": "user-123456",
    }
    with pytest.raises(RelayError):
        convert_image_request({"prompt": "a cat", "response_format": "b64_json"}, "cogview-3")


@pytest.mark.parametrize(
    ("mode", "model", "stream", "base_url", "url"),
    [
        (RelayMode.CHAT, MODEL, False, "", "https://open.bigmodel.cn/api/paas/v4/chat/completions"),
        (
            RelayMode.CHAT,
            MODEL,
            True,
            "https://proxy.example/api/paas/v4/",
            "https://proxy.example/api/paas/v4/chat/completions",
        ),
        (
            RelayMode.CHAT,
            "chatglm_turbo",
            False,
            "",
            "https://open.bigmodel.cn/api/paas/v3/model-api/chatglm_turbo/invoke",
        ),
        (
            RelayMode.CHAT,
            "chatglm_pro",
            True,
            "",
            "https://open.bigmodel.cn/api/paas/v3/model-api/chatglm_pro/sse-invoke",
        ),
        (
            RelayMode.EMBEDDINGS,
            "embedding-3",
            False,
            "",
            "https://open.bigmodel.cn/api/paas/v4/embeddings",
        ),
        (
            RelayMode.IMAGES_GENERATIONS,
            "cogview-3",
            False,
            "",
            "https://open.bigmodel.cn/api/paas/v4/images/generations",
        ),
    ],
)
def test_urls(mode: RelayMode, model: str, stream: bool, base_url: str, url: str) -> None:
    payload = {"messages": [{"role": "user", "content": "Hi"}], "input": "x", "prompt": "p"}
    attempt = make_attempt(mode=mode, model=model, stream=stream, base_url=base_url)
    assert ADAPTOR.build_request(attempt, OpenAIBody(b"", payload)).url == url


@pytest.mark.parametrize(
    "mode", [RelayMode.COMPLETIONS, RelayMode.MODERATIONS, RelayMode.AUDIO_SPEECH]
)
def test_other_modes_are_refused(mode: RelayMode) -> None:
    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_request(make_attempt(mode=mode), OpenAIBody(b"{}", {}))
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")
    with pytest.raises(RelayError):
        ADAPTOR.build_raw_request(make_attempt(mode=mode), b"", "multipart/form-data")


def test_zhipu_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.ZHIPU), ZhipuAdaptor)


# ---------------------------------------------------------------------- responses

V4_RESPONSE = {
    "id": "8704215573432452094",
    "request_id": "req-1",
    "created": 1717171717,
    "model": "glm-4",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_8704215573432452094",
                        "index": 0,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"location":"北京"}'},
                    }
                ],
            },
        }
    ],
    "usage": {"prompt_tokens": 150, "completion_tokens": 14, "total_tokens": 164},
}


def test_v4_response_gets_object_and_keeps_tool_calls_and_usage() -> None:
    result = convert_response(V4_RESPONSE, MODEL)

    assert result["object"] == "chat.completion"
    assert result["id"] == "8704215573432452094"
    assert result["choices"][0]["finish_reason"] == "tool_calls"
    assert result["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert result["usage"] == V4_RESPONSE["usage"]


@pytest.mark.parametrize(
    ("reason", "mapped"),
    [("stop", "stop"), ("length", "length"), ("sensitive", "content_filter")],
)
def test_v4_finish_reasons(reason: str, mapped: str) -> None:
    data = {"choices": [{"index": 0, "finish_reason": reason, "message": {"content": "x"}}]}
    assert convert_response(data, MODEL)["choices"][0]["finish_reason"] == mapped


def test_v3_response_is_unwrapped() -> None:
    data = {
        "code": 200,
        "msg": "操作成功",
        "success": True,
        "data": {
            "request_id": "r1",
            "task_id": "t1",
            "task_status": "SUCCESS",
            "choices": [{"role": "assistant", "content": '" 你好！\\n我是 ChatGLM"'}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10},
        },
    }

    result = convert_v3_response(data, "chatglm_turbo")

    assert result["id"] == "t1"
    assert result["model"] == "chatglm_turbo"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": " 你好！\n我是 ChatGLM"},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert result["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}


@pytest.mark.parametrize(
    ("code", "status"), [(1002, 401), (1261, 400), (1302, 429), (1113, 429), (1234, 500)]
)
def test_v3_errors_keep_zhipus_message(code: int, status: int) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        convert_v3_response({"code": code, "msg": "失败了", "success": False}, "chatglm_std")
    error = caught.value.error
    assert (error.status, error.message, error.type, error.code) == (
        status,
        "失败了",
        "zhipu_error",
        code,
    )
    assert caught.value.retryable is (status != 400)


def test_embedding_response_in_floats_or_base64() -> None:
    data = {
        "model": "embedding-3",
        "object": "list",
        "data": [{"index": 0, "object": "embedding", "embedding": [0.5, -0.25]}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4},
    }

    plain = convert_embedding_response(data, "embedding-3")
    assert plain == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "embedding-3",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    encoded = convert_embedding_response(data, "embedding-3", "base64")
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (0.5, -0.25)


# ---------------------------------------------------------------------- streams


def frames_of(output: bytes | None) -> list[Any]:
    events = []
    for block in (output or b"").split(b"\n\n"):
        if block.startswith(b"data: "):
            body = block[6:]
            events.append("[DONE]" if body == b"[DONE]" else orjson.loads(body))
    return events


V4_STREAM = [
    b'data: {"id":"s1","created":1717171717,"model":"glm-4","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"\xe4\xbd\xa0\xe5\xa5\xbd"}}]}',
    b"",
    b'data: {"id":"s1","created":1717171717,"model":"glm-4","choices":[{"index":0,'
    b'"finish_reason":"stop","delta":{"role":"assistant","content":""}}],'
    b'"usage":{"prompt_tokens":8,"completion_tokens":2,"total_tokens":10}}',
    b"",
    b"data: [DONE]",
]


@pytest.mark.parametrize("wants_usage", [False, True])
def test_v4_stream(wants_usage: bool) -> None:
    translator = ZhipuStream(client_wants_usage=wants_usage, model=MODEL)

    frames = [f for line in V4_STREAM for f in frames_of(translator.accept(line))]

    assert frames[0]["object"] == "chat.completion.chunk"
    assert frames[0]["choices"][0]["delta"]["content"] == "你好"
    assert frames[1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in frames[1]  # kept off the choice chunk
    usage = {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10}
    if wants_usage:
        assert frames[2] == {
            "id": "s1",
            "object": "chat.completion.chunk",
            "created": 1717171717,
            "model": MODEL,
            "choices": [],
            "usage": usage,
        }
    assert frames[-1] == "[DONE]"
    assert len(frames) == (4 if wants_usage else 3)
    assert translator.usage == usage
    assert translator.saw_done
    assert translator.generated_text == "你好"


def test_v4_stream_tool_call_and_sensitive_finish() -> None:
    translator = ZhipuStream(client_wants_usage=False, model=MODEL)
    call = {
        "id": "call_1",
        "index": 0,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"北京"}'},
    }
    first = {"id": "s", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    last = {"id": "s", "choices": [{"index": 0, "finish_reason": "sensitive", "delta": {}}]}

    frames = frames_of(translator.accept(b"data: " + orjson.dumps(first)))
    frames += frames_of(translator.accept(b"data: " + orjson.dumps(last)))

    assert frames[0]["choices"][0]["delta"]["tool_calls"] == [call]
    assert frames[1]["choices"][0]["finish_reason"] == "content_filter"
    assert translator.generated_text == 'get_weather{"location":"北京"}'


def test_v4_stream_error_event() -> None:
    translator = ZhipuStream(client_wants_usage=False, model=MODEL)
    frame = translator.accept(b'data: {"error":{"code":"1301","message":"sensitive"}}')
    assert frames_of(frame)[0]["error"]["message"] == "sensitive"
    assert translator.upstream_error is not None
    assert translator.upstream_error["code"] == "1301"


V3_STREAM = [
    b"event:add",
    b"id:8305986882425703351",
    b"data:\xe4\xbd\xa0\xe5\xa5\xbd",
    b"",
    b"event:add",
    b"id:8305986882425703351",
    b"data: world",
    b"data:second line",
    b"",
    b"event:finish",
    b"id:8305986882425703351",
    b"data:",
    b'meta:{"task_status":"SUCCESS","usage":{"prompt_tokens":5,"completion_tokens":4,'
    b'"total_tokens":9},"task_id":"8305986882425703351","request_id":"r"}',
    b"",
]


@pytest.mark.parametrize("wants_usage", [False, True])
def test_v3_stream(wants_usage: bool) -> None:
    translator = ZhipuV3Stream(client_wants_usage=wants_usage, model="chatglm_turbo")

    frames = [f for line in V3_STREAM for f in frames_of(translator.accept(line))]

    chunks = [f for f in frames if f != "[DONE]" and f["choices"]]
    texts = [f["choices"][0]["delta"].get("content") for f in chunks]
    assert texts[:3] == ["你好", "world", "\nsecond line"]
    assert frames[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {f["id"] for f in frames if f != "[DONE]"} == {"8305986882425703351"}
    finish = [f for f in chunks if f["choices"][0]["finish_reason"]]
    assert finish[0]["choices"][0]["finish_reason"] == "stop"
    assert frames[-1] == "[DONE]"
    usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    assert translator.usage == usage
    assert (frames[-2].get("usage") == usage) is wants_usage
    assert translator.generated_text == "你好world\nsecond line"


def test_v3_stream_interrupted_and_error_events() -> None:
    interrupted = ZhipuV3Stream(client_wants_usage=False, model="chatglm_turbo")
    notice = "data:触发敏感词".encode()
    lines = [b"event:add", b"data:Hi", b"", b"event:interrupted", notice, b""]
    frames = [f for line in lines for f in frames_of(interrupted.accept(line))]
    assert frames[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert frames[-1] == "[DONE]"
    assert interrupted.generated_text == "Hi"

    failed = ZhipuV3Stream(client_wants_usage=False, model="chatglm_turbo")
    frames = [f for line in (b"event:error", b"data:boom") for f in frames_of(failed.accept(line))]
    error = {"message": "boom", "type": "zhipu_error", "param": None, "code": None}
    assert frames == [{"error": error}]
    assert failed.upstream_error is not None and not failed.saw_done


# ---------------------------------------------------------------------- the fake upstream


@pytest.fixture
def glm() -> Iterator[FakeZhipu]:
    with FakeZhipu(api_key=KEY) as fake:
        yield fake


def test_the_fake_refuses_bad_tokens(glm: FakeZhipu) -> None:
    url = f"{glm.base_url}/api/paas/v4/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}
    now = int(time.time() * 1000)
    expired = jwt.encode(
        {"api_key": KEY_ID, "exp": now - 1000, "timestamp": now - 5000},
        SECRET,
        algorithm="HS256",
        headers={"sign_type": "SIGN"},
    )
    for token, code in (
        ("", "1001"),
        ("not-a-jwt", "1002"),
        (sign_token(f"{KEY_ID}.wrong-secret-wrong-secret-wrong-sec", now), "1002"),
        (expired, "1003"),
    ):
        response = httpx.post(url, json=body, headers={"Authorization": token})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == code
    good = httpx.post(url, json=body, headers={"Authorization": sign_token(KEY, now)})
    assert good.status_code == 200


# ---------------------------------------------------------------------- through the relay


MODELS = "glm-4,glm-4v,chatglm_turbo,embedding-2,embedding-3,cogview-3"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "你好"}]}


@pytest.fixture
def channel(world: World, glm: FakeZhipu) -> Channel:
    return make_channel(type=ChannelType.ZHIPU, base_url=glm.base_url, key=KEY, models=MODELS)


def expected_quota(model: str, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, ChannelType.ZHIPU)
    completion_ratio = pricing.completion_ratio(model, ChannelType.ZHIPU)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_chat_is_signed_converted_and_billed_from_zhipu_usage(
    world: World, channel: Channel, glm: FakeZhipu
) -> None:
    payload = {**CHAT, "temperature": 1.5, "stop": ["a", "b"], "n": 1}

    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    sent = glm.last_request
    assert sent.path == "/api/paas/v4/chat/completions"
    assert sent.claims is not None and sent.claims["api_key"] == KEY_ID  # verified by PyJWT
    assert sent.json == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "你好"}],
        "temperature": 1.0,
        "stop": ["a"],
    }
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == glm.reply
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (12, 8)
    assert log.channel_id == channel.pk
    assert log.quota == expected_quota(MODEL, 12, 8) == world.user.used_quota


def test_the_token_is_reused_across_requests(
    world: World, channel: Channel, glm: FakeZhipu
) -> None:
    for _ in range(3):
        assert world.client.post("/v1/chat/completions", CHAT).status == 200
    tokens = {request.headers["authorization"] for request in glm.requests}
    assert len(tokens) == 1


def test_stream_is_converted_and_billed(world: World, channel: Channel, glm: FakeZhipu) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200
    assert result.headers["content-type"].startswith("text/event-stream")
    events = result.events
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == glm.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert glm.last_request.json is not None
    assert "stream_options" not in glm.last_request.json
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (12, 8)
    assert log.is_stream


def test_stream_usage_chunk_when_asked(world: World, channel: Channel, glm: FakeZhipu) -> None:
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

    events = world.client.post("/v1/chat/completions", payload).events

    with_usage = [e for e in events if e != "[DONE]" and e.get("usage")]
    assert len(with_usage) == 1
    assert with_usage[0]["choices"] == []
    assert with_usage[0]["usage"]["total_tokens"] == 20


def test_tool_round_trip(world: World, channel: Channel, glm: FakeZhipu) -> None:
    glm.scenario = "tool_call"
    ask = {**CHAT, "tools": [WEATHER_TOOL], "tool_choice": "required"}

    first = world.client.post("/v1/chat/completions", ask).json()

    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": glm.tool_arguments}
    messages = [
        *CHAT["messages"],
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "晴"},
    ]
    second = world.client.post(
        "/v1/chat/completions", {**CHAT, "messages": messages, "tools": [WEATHER_TOOL]}
    )
    assert second.status == 200, second.body
    assert second.json()["choices"][0]["message"]["content"] == glm.reply

    streamed = world.client.post("/v1/chat/completions", {**ask, "stream": True}).events
    calls = [e["choices"][0]["delta"].get("tool_calls") for e in streamed[:-1]]
    assert [c for c in calls if c][0][0]["function"]["name"] == "get_weather"
    assert streamed[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_vision_with_a_data_url(world: World, channel: Channel, glm: FakeZhipu) -> None:
    content = [
        {"type": "text", "text": "这是什么？"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    result = world.client.post(
        "/v1/chat/completions",
        {"model": "glm-4v", "messages": [{"role": "user", "content": content}]},
    )

    assert result.status == 200, result.body
    assert glm.last_request.json is not None
    sent = glm.last_request.json["messages"][0]["content"]
    assert sent[1] == {"type": "image_url", "image_url": {"url": PNG}}


def test_v3_invoke_and_sse_invoke(world: World, channel: Channel, glm: FakeZhipu) -> None:
    payload = {**CHAT, "model": "chatglm_turbo", "temperature": 0}

    plain = world.client.post("/v1/chat/completions", payload)

    assert plain.status == 200, plain.body
    assert glm.last_request.path == "/api/paas/v3/model-api/chatglm_turbo/invoke"
    assert glm.last_request.json == {
        "prompt": [{"role": "user", "content": "你好"}],
        "temperature": 0.01,
    }
    assert plain.json()["choices"][0]["message"]["content"] == glm.reply  # unquoted

    streamed = world.client.post("/v1/chat/completions", {**payload, "stream": True})

    assert glm.last_request.path == "/api/paas/v3/model-api/chatglm_turbo/sse-invoke"
    events = streamed.events
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == glm.reply + "\n第二行"
    assert events[-1] == "[DONE]"
    world.refresh()
    logs = list(Log.objects.order_by("id"))
    assert [(log.prompt_tokens, log.completion_tokens) for log in logs] == [(12, 8), (12, 8)]


def test_v3_error_with_status_200_becomes_an_openai_error(
    world: World, channel: Channel, glm: FakeZhipu
) -> None:
    glm.scenario = "v3_error"

    result = world.client.post("/v1/chat/completions", {**CHAT, "model": "chatglm_turbo"})

    assert result.status == 400
    error = result.json()["error"]
    assert error["type"] == "zhipu_error"
    assert error["code"] == 1261
    assert error["message"].startswith("Prompt 超长")
    world.refresh()
    assert Log.objects.count() == 0
    assert world.user.used_quota == 0


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(world: World, channel: Channel, glm: FakeZhipu, encoding: str) -> None:
    payload = {"model": "embedding-3", "input": ["天气", "很好"], "encoding_format": encoding}

    result = world.client.post("/v1/embeddings", payload)

    assert result.status == 200, result.body
    assert glm.last_request.json == {"model": "embedding-3", "input": ["天气", "很好"]}
    body = result.json()
    assert body["object"] == "list"
    vector = body["data"][1]["embedding"]
    if encoding == "base64":
        vector = list(struct.unpack("<8f", base64.b64decode(vector)))
    assert vector == pytest.approx(zhipu_vector("很好", 8), abs=1e-6)
    assert body["usage"] == {"prompt_tokens": 12, "total_tokens": 12}
    world.refresh()
    assert Log.objects.get().prompt_tokens == 12


def test_cogview_images(world: World, channel: Channel, glm: FakeZhipu) -> None:
    result = world.client.post(
        "/v1/images/generations", {"model": "cogview-3", "prompt": "一只猫", "size": "1024x1024"}
    )

    assert result.status == 200, result.body
    assert glm.last_request.path == "/api/paas/v4/images/generations"
    assert glm.last_request.json == {"model": "cogview-3", "prompt": "一只猫", "size": "1024x1024"}
    assert result.json()["data"] == [{"url": glm.image_url}]
    world.refresh()
    assert Log.objects.get().quota > 0


def test_rate_limit_keeps_status_429(world: World, channel: Channel, glm: FakeZhipu) -> None:
    glm.scenario = "error_429"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 429
    assert "并发数过高" in result.json()["error"]["message"]
    world.refresh()
    assert world.user.used_quota == 0


def test_wrong_secret_is_an_authentication_error(
    world: World, channel: Channel, glm: FakeZhipu
) -> None:
    glm.api_key = f"{KEY_ID}.another-secret-another-secret-xxx"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 401
    assert "Authorization Token" in result.json()["error"]["message"]


def test_unsupported_mode_never_reaches_zhipu(
    world: World, channel: Channel, glm: FakeZhipu
) -> None:
    result = world.client.post("/v1/completions", {"model": MODEL, "prompt": "Hi"})

    assert result.status == 400
    assert result.json()["error"]["code"] == "unsupported_mode"
    assert glm.requests == []
