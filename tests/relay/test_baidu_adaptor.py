"""The Baidu ERNIE adaptor: the access-token exchange and its cache, conversions on ERNIE's
wire format, then the relay against a fake aip.baidubce.com."""

from __future__ import annotations

import base64
import math
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from relay.adaptors import adaptor_for, baidu
from relay.adaptors.baidu import (
    BaiduAdaptor,
    BaiduStream,
    access_token,
    convert_chat_request,
    convert_embedding_request,
    convert_embedding_response,
    convert_response,
    fetch_access_token,
)
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.token_cache import TokenCache
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from tests.factories import make_channel
from tests.fakes.baidu_upstream import FakeBaidu, baidu_vector
from tests.relay.conftest import World

MODEL = "ERNIE-3.5-8K"
ADAPTOR = BaiduAdaptor()
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
    baidu.reset_tokens()
    yield
    baidu.reset_tokens()


@pytest.fixture
def ernie() -> Iterator[FakeBaidu]:
    with FakeBaidu() as fake:
        yield fake


def make_attempt(
    *,
    mode: RelayMode = RelayMode.CHAT,
    model: str = MODEL,
    stream: bool = False,
    base_url: str = "",
    key: str = "baidu-ak|baidu-sk",
    client_body: dict[str, Any] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=ChannelType.BAIDU,
        name="ernie",
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


# ---------------------------------------------------------------------- the access token


def test_token_exchange(ernie: FakeBaidu) -> None:
    token, ttl = fetch_access_token(ernie.base_url, ernie.key)

    assert token in ernie.issued_tokens
    assert ttl == 2_592_000
    (sent,) = ernie.requests
    assert (sent.method, sent.path) == ("POST", "/oauth/2.0/token")
    assert sent.query == {
        "grant_type": "client_credentials",
        "client_id": "baidu-ak",
        "client_secret": "baidu-sk",
    }


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("wrong|baidu-sk", 401, "unknown client id"),
        ("baidu-ak|wrong", 401, "Client authentication failed"),
        ("no-separator", 401, "expected `API key|secret key`"),
    ],
)
def test_token_exchange_failures(ernie: FakeBaidu, key: str, status: int, message: str) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        fetch_access_token(ernie.base_url, key)
    assert caught.value.error.status == status
    assert message in caught.value.error.message
    assert "baidu-sk" not in caught.value.error.message


def test_unreachable_token_endpoint_hides_the_secret() -> None:
    with pytest.raises(UpstreamFailure) as caught:
        fetch_access_token("http://127.0.0.1:9", "ak|super-secret")
    assert caught.value.error.status == 500
    assert caught.value.retryable
    assert "super-secret" not in caught.value.error.message


def test_token_is_cached_per_key_and_base_url(ernie: FakeBaidu) -> None:
    attempt = make_attempt(base_url=ernie.base_url)

    first = access_token(attempt)
    assert access_token(attempt) == first
    assert ernie.token_requests == 1

    other = FakeBaidu(client_id="other-ak", client_secret="other-sk").start()
    try:
        other_token = access_token(make_attempt(base_url=other.base_url, key=other.key))
    finally:
        other.stop()
    assert other_token != first
    assert ernie.token_requests == 1


def test_token_is_renewed_in_the_background_before_it_expires(
    ernie: FakeBaidu, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    cache = TokenCache(
        baidu.TOKEN_REFRESH_MARGIN_SECONDS, background_refresh=True, clock=lambda: clock[0]
    )
    monkeypatch.setattr(baidu, "_tokens", cache)
    attempt = make_attempt(base_url=ernie.base_url)
    first = access_token(attempt)

    clock[0] = ernie.token_ttl - 3601
    assert access_token(attempt) == first
    assert ernie.token_requests == 1
    clock[0] += 2  # less than an hour left: renewed, the caller still gets the valid one
    assert access_token(attempt) == first

    deadline = time.monotonic() + 5
    while access_token(attempt) == first and time.monotonic() < deadline:
        time.sleep(0.01)
    renewed = access_token(attempt)
    assert renewed != first
    assert ernie.token_requests == 2
    assert renewed in ernie.issued_tokens


def test_twenty_concurrent_requests_share_one_exchange(ernie: FakeBaidu) -> None:
    ernie.token_delay = 0.3
    attempt = make_attempt(base_url=ernie.base_url)
    barrier = threading.Barrier(20)
    tokens: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        token = access_token(attempt)
        with lock:
            tokens.append(token)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(tokens) == 20
    assert len(set(tokens)) == 1
    assert ernie.token_requests == 1


@pytest.mark.parametrize("code", [110, 111])
def test_token_errors_drop_the_cached_token(ernie: FakeBaidu, code: int) -> None:
    attempt = make_attempt(base_url=ernie.base_url)
    first = access_token(attempt)
    body = orjson.dumps({"error_code": code, "error_msg": "Access token invalid"})

    with pytest.raises(UpstreamFailure) as caught:
        ADAPTOR.translate_response(attempt, body)

    assert caught.value.error.status == 500  # a stale token, not a dead channel
    assert caught.value.retryable
    assert access_token(attempt) != first
    assert ernie.token_requests == 2


# ---------------------------------------------------------------------- requests


def test_chat_request_conversion() -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "你是助手。"},
            {"role": "developer", "content": "回答简短。"},
            {"role": "user", "content": "你好"},
            {"role": "user", "content": [{"type": "text", "text": "在吗"}]},
        ],
        "temperature": 0,
        "top_p": 1.5,
        "frequency_penalty": 1.0,
        "max_tokens": 1,
        "stop": ["a", "b", "c", "d", "e"],
        "user": "u-1",
        "response_format": {"type": "json_object"},
        "stream_options": {"include_usage": True},
        "presence_penalty": 1,
        "n": 1,
    }

    assert convert_chat_request(payload, stream=True) == {
        "messages": [{"role": "user", "content": "你好\n在吗"}],  # merged: ERNIE alternates
        "system": "你是助手。\n回答简短。",
        "stream": True,
        "temperature": 0.01,  # ERNIE's temperature is (0, 1]
        "top_p": 1.0,
        "penalty_score": 1.5,
        "max_output_tokens": 2,
        "stop": ["a", "b", "c", "d"],
        "user_id": "u-1",
        "response_format": "json_object",
    }


def test_penalty_score_from_the_client_or_frequency_penalty() -> None:
    def penalty(**fields: Any) -> Any:
        return convert_chat_request({"messages": [], **fields}, False).get("penalty_score")

    assert penalty() is None
    assert penalty(penalty_score=1.2) == 1.2
    assert penalty(penalty_score=5) == 2.0
    assert penalty(frequency_penalty=-2) == 1.0
    assert penalty(frequency_penalty=2) == 2.0


def test_tools_become_functions_and_tool_turns_function_turns() -> None:
    call = {
        "id": "call_as-1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"location":"北京"}'},
    }
    payload = {
        "messages": [
            {"role": "user", "content": "天气？"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_as-1", "content": "晴"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }

    body = convert_chat_request(payload, False)

    assert body["messages"] == [
        {"role": "user", "content": "天气？"},
        {
            "role": "assistant",
            "content": "",
            "function_call": {"name": "get_weather", "arguments": '{"location":"北京"}'},
        },
        {"role": "function", "name": "get_weather", "content": "晴"},
    ]
    assert body["functions"] == [WEATHER_TOOL["function"]]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    none = convert_chat_request({**payload, "tool_choice": "none"}, False)
    assert "functions" not in none and "tool_choice" not in none


@pytest.mark.parametrize(
    "payload",
    [
        {"messages": [], "n": 2},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [WEATHER_TOOL, WEATHER_TOOL]},
            ]
        },
    ],
)
def test_what_ernie_cannot_take_is_a_client_error(payload: dict[str, Any]) -> None:
    with pytest.raises(RelayError) as caught:
        convert_chat_request(payload, False)
    assert caught.value.status == 400


def test_embedding_request() -> None:
    assert convert_embedding_request({"input": "一", "user": "u"}) == {
        "input": ["一"],
        "user_id": "u",
    }
    assert convert_embedding_request({"input": ["一", "二"]}) == {"input": ["一", "二"]}
    with pytest.raises(RelayError):
        convert_embedding_request({"input": [[1, 2, 3]]})


@pytest.mark.parametrize(
    ("mode", "model", "path"),
    [
        (RelayMode.CHAT, "ERNIE-4.0-8K", "chat/completions_pro"),
        (RelayMode.CHAT, "ERNIE-3.5-8K", "chat/completions"),
        (RelayMode.CHAT, "ERNIE-Speed-128K", "chat/ernie-speed-128k"),
        (RelayMode.CHAT, "ERNIE-Speed-8K", "chat/ernie_speed"),
        (RelayMode.CHAT, "ERNIE-Lite-8K", "chat/ernie-lite-8k"),
        (RelayMode.CHAT, "ERNIE-Lite-8K-0922", "chat/eb-instant"),
        (RelayMode.CHAT, "ERNIE-Tiny-8K", "chat/ernie-tiny-8k"),
        (RelayMode.CHAT, "ERNIE-Character-8K", "chat/ernie-char-8k"),
        (RelayMode.CHAT, "ERNIE-4.0-Turbo-8K", "chat/ernie-4.0-turbo-8k"),  # lower-cased
        (RelayMode.EMBEDDINGS, "Embedding-V1", "embeddings/embedding-v1"),
        (RelayMode.EMBEDDINGS, "bge-large-zh", "embeddings/bge_large_zh"),
        (RelayMode.EMBEDDINGS, "tao-8k", "embeddings/tao_8k"),
    ],
)
def test_endpoint_table(ernie: FakeBaidu, mode: RelayMode, model: str, path: str) -> None:
    attempt = make_attempt(mode=mode, model=model, base_url=ernie.base_url)
    body = OpenAIBody(b"", {"messages": [{"role": "user", "content": "Hi"}], "input": "x"})

    request = ADAPTOR.build_request(attempt, body)

    url, _, query = request.url.partition("?")
    assert url == f"{ernie.base_url}/rpc/2.0/ai_custom/v1/wenxinworkshop/{path}"
    assert query == f"access_token={ernie.issued_tokens[0]}"
    assert "Authorization" not in request.headers  # the token travels in the query only


@pytest.mark.parametrize(
    "mode", [RelayMode.COMPLETIONS, RelayMode.IMAGES_GENERATIONS, RelayMode.MODERATIONS]
)
def test_other_modes_are_refused_before_any_exchange(ernie: FakeBaidu, mode: RelayMode) -> None:
    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_request(make_attempt(mode=mode, base_url=ernie.base_url), OpenAIBody(b"", {}))
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")
    with pytest.raises(RelayError):
        ADAPTOR.build_raw_request(make_attempt(mode=mode), b"", "multipart/form-data")
    assert ernie.token_requests == 0


def test_baidu_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.BAIDU), BaiduAdaptor)


# ---------------------------------------------------------------------- responses

ANSWER = {
    "id": "as-bcmt5ct4iy",
    "object": "chat.completion",
    "created": 1680167072,
    "result": "您好，我是文心一言。",
    "is_truncated": False,
    "need_clear_history": False,
    "finish_reason": "normal",
    "usage": {"prompt_tokens": 1, "completion_tokens": 67, "total_tokens": 68},
}
FUNCTION_ANSWER = {
    **ANSWER,
    "result": "",
    "finish_reason": "function_call",
    "function_call": {
        "name": "get_weather",
        "thoughts": "用户想知道天气",
        "arguments": '{"location":"北京"}',
    },
}


def test_text_answer() -> None:
    result = convert_response(ANSWER, MODEL, legacy_functions=False)

    assert result == {
        "id": "as-bcmt5ct4iy",
        "object": "chat.completion",
        "created": 1680167072,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "您好，我是文心一言。"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 67, "total_tokens": 68},
    }


def test_function_call_answer_as_tool_calls_or_function_call() -> None:
    tools = convert_response(FUNCTION_ANSWER, MODEL, legacy_functions=False)["choices"][0]
    assert tools["finish_reason"] == "tool_calls"
    assert tools["message"]["content"] is None
    assert tools["message"]["tool_calls"] == [
        {
            "id": "call_as-bcmt5ct4iy",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"北京"}'},
        }
    ]
    legacy = convert_response(FUNCTION_ANSWER, MODEL, legacy_functions=True)["choices"][0]
    assert legacy["finish_reason"] == "function_call"
    assert legacy["message"]["function_call"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("fields", "finish"),
    [
        ({"finish_reason": "length"}, "length"),
        ({"finish_reason": "content_filter"}, "content_filter"),
        ({"finish_reason": None, "is_truncated": True}, "length"),
        ({"finish_reason": "stop"}, "stop"),
    ],
)
def test_finish_reasons(fields: dict[str, Any], finish: str) -> None:
    result = convert_response({**ANSWER, **fields}, MODEL, legacy_functions=False)
    assert result["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(
    ("code", "status"),
    [(18, 429), (17, 429), (336501, 429), (336003, 400), (6, 403), (13, 401), (9999, 500)],
)
def test_errors_with_status_200_become_openai_errors(code: int, status: int) -> None:
    body = orjson.dumps({"error_code": code, "error_msg": "出错了", "id": "as-1"})

    with pytest.raises(UpstreamFailure) as caught:
        ADAPTOR.translate_response(make_attempt(), body)

    error = caught.value.error
    assert (error.status, error.message, error.type, error.code) == (
        status,
        "出错了",
        "baidu_error",
        code,
    )
    assert caught.value.retryable is (status != 400)


def test_embedding_answer() -> None:
    data = {
        "id": "as-1",
        "object": "embedding_list",
        "created": 1,
        "data": [{"object": "embedding", "embedding": [0.5, 0.25], "index": 0}],
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }

    assert convert_embedding_response(data, "Embedding-V1") == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "model": "Embedding-V1",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    encoded = convert_embedding_response(data, "Embedding-V1", "base64")["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (0.5, 0.25)


# ---------------------------------------------------------------------- stream


def frames_of(output: bytes | None) -> list[Any]:
    events = []
    for block in (output or b"").split(b"\n\n"):
        if block.startswith(b"data: "):
            body = block[6:]
            events.append("[DONE]" if body == b"[DONE]" else orjson.loads(body))
    return events


def stream_line(**fields: Any) -> bytes:
    chunk = {
        "id": "as-vb0m37ti8y",
        "object": "chat.completion",
        "created": 1693565731,
        "sentence_id": 0,
        "is_end": False,
        "is_truncated": False,
        "result": "",
        "need_clear_history": False,
        "finish_reason": "normal",
        "usage": {"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 7},
        **fields,
    }
    return b"data: " + orjson.dumps(chunk)


@pytest.mark.parametrize("wants_usage", [False, True])
def test_stream(wants_usage: bool) -> None:
    translator = BaiduStream(attempt=make_attempt(stream=True), client_wants_usage=wants_usage)
    lines = [
        stream_line(result="您好，"),
        b"",
        stream_line(sentence_id=1, result="我是文心一言。"),
        b"",
        stream_line(
            sentence_id=2,
            is_end=True,
            usage={"prompt_tokens": 7, "completion_tokens": 0, "total_tokens": 19},
        ),
    ]

    frames = [f for line in lines for f in frames_of(translator.accept(line))]

    assert frames[0]["id"] == "as-vb0m37ti8y"
    assert frames[0]["object"] == "chat.completion.chunk"
    assert frames[0]["model"] == MODEL
    assert frames[0]["choices"][0]["delta"] == {"role": "assistant", "content": "您好，"}
    assert frames[1]["choices"][0]["delta"] == {"content": "我是文心一言。"}
    assert frames[2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    usage = {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}
    if wants_usage:
        assert frames[3]["choices"] == [] and frames[3]["usage"] == usage
    assert frames[-1] == "[DONE]"
    assert translator.usage == usage
    assert translator.saw_done
    assert translator.generated_text == "您好，我是文心一言。"


def test_stream_function_call() -> None:
    translator = BaiduStream(attempt=make_attempt(stream=True), client_wants_usage=False)

    frames = frames_of(
        translator.accept(
            stream_line(
                is_end=True,
                finish_reason="function_call",
                function_call=FUNCTION_ANSWER["function_call"],
            )
        )
    )

    call = frames[0]["choices"][0]["delta"]["tool_calls"][0]
    assert call["index"] == 0
    assert call["function"] == {"name": "get_weather", "arguments": '{"location":"北京"}'}
    assert frames[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert frames[-1] == "[DONE]"


def test_stream_error_line_drops_a_stale_token(ernie: FakeBaidu) -> None:
    attempt = make_attempt(stream=True, base_url=ernie.base_url)
    first = access_token(attempt)
    translator = BaiduStream(attempt=attempt, client_wants_usage=False)

    frames = frames_of(
        translator.accept(b'data: {"error_code":111,"error_msg":"Access token expired"}')
    )

    assert frames[0]["error"]["code"] == 111
    assert translator.upstream_error is not None
    assert access_token(attempt) != first


# ---------------------------------------------------------------------- through the relay

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "你好"}]}


@pytest.fixture
def channel(world: World, ernie: FakeBaidu) -> Channel:
    return make_channel(
        type=ChannelType.BAIDU,
        base_url=ernie.base_url,
        key=ernie.key,
        models=f"{MODEL},ERNIE-4.0-8K,Embedding-V1",
    )


def expected_quota(model: str, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, ChannelType.BAIDU)
    completion_ratio = pricing.completion_ratio(model, ChannelType.BAIDU)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_chat_is_converted_and_billed_from_ernie_usage(
    world: World, channel: Channel, ernie: FakeBaidu
) -> None:
    payload = {
        **CHAT,
        "messages": [{"role": "system", "content": "简短回答。"}, *CHAT["messages"]],
        "temperature": 0,
    }

    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    sent = ernie.last_request
    assert sent.path == "/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/completions"
    assert sent.query["access_token"] in ernie.issued_tokens
    assert sent.json == {
        "messages": [{"role": "user", "content": "你好"}],
        "system": "简短回答。",
        "temperature": 0.01,
    }
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == ernie.reply
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 6, "total_tokens": 16}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (10, 6)
    assert log.channel_id == channel.pk
    assert log.quota == expected_quota(MODEL, 10, 6) == world.user.used_quota

    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    assert ernie.token_requests == 1  # the second request reused the token


def test_stream_is_converted_and_billed(world: World, channel: Channel, ernie: FakeBaidu) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200
    events = result.events
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == ernie.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert ernie.last_request.json is not None
    assert ernie.last_request.json["stream"] is True
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (10, 6)
    assert log.is_stream


def test_stream_usage_chunk_when_asked(world: World, channel: Channel, ernie: FakeBaidu) -> None:
    payload = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}

    events = world.client.post("/v1/chat/completions", payload).events

    with_usage = [e for e in events if e != "[DONE]" and e.get("usage")]
    assert len(with_usage) == 1
    assert with_usage[0]["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 6,
        "total_tokens": 16,
    }


def test_function_round_trip(world: World, channel: Channel, ernie: FakeBaidu) -> None:
    ernie.scenario = "function_call"

    first = world.client.post("/v1/chat/completions", {**CHAT, "tools": [WEATHER_TOOL]}).json()

    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": ernie.function_arguments}
    messages = [
        *CHAT["messages"],
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "晴，25℃"},
    ]
    second = world.client.post(
        "/v1/chat/completions", {**CHAT, "messages": messages, "tools": [WEATHER_TOOL]}
    )
    assert second.status == 200, second.body
    assert ernie.last_request.json is not None
    assert ernie.last_request.json["messages"][2] == {
        "role": "function",
        "name": "get_weather",
        "content": "晴，25℃",
    }
    assert second.json()["choices"][0]["message"]["content"] == ernie.reply

    streamed = world.client.post(
        "/v1/chat/completions", {**CHAT, "tools": [WEATHER_TOOL], "stream": True}
    ).events
    assert streamed[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_revoked_token_fails_once_then_a_new_one_is_fetched(
    world: World, channel: Channel, ernie: FakeBaidu
) -> None:
    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    ernie.revoke_tokens()

    failed = world.client.post("/v1/chat/completions", CHAT)

    assert failed.status == 500
    error = failed.json()["error"]
    assert (error["type"], error["code"]) == ("baidu_error", 110)
    again = world.client.post("/v1/chat/completions", CHAT)
    assert again.status == 200, again.body
    assert ernie.token_requests == 2
    channel.refresh_from_db()
    assert channel.status == 1  # a stale token does not disable the channel


def test_expired_token_in_a_stream_request(
    world: World, channel: Channel, ernie: FakeBaidu
) -> None:
    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    ernie.expire_tokens()

    failed = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert failed.status == 500
    assert failed.json()["error"]["code"] == 111
    assert world.client.post("/v1/chat/completions", {**CHAT, "stream": True}).status == 200


def test_rate_limit_is_429(world: World, channel: Channel, ernie: FakeBaidu) -> None:
    ernie.scenario = "rate_limit"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 429
    assert "qps request limit" in result.json()["error"]["message"]
    world.refresh()
    assert world.user.used_quota == 0


def test_invalid_request_keeps_ernies_message(
    world: World, channel: Channel, ernie: FakeBaidu
) -> None:
    payload = {**CHAT, "messages": [{"role": "assistant", "content": "先说话"}]}

    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 400
    assert result.json()["error"]["code"] == 336003


def test_wrong_secret_fails_at_the_token_exchange(
    world: World, channel: Channel, ernie: FakeBaidu
) -> None:
    ernie.client_secret = "rotated"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 401
    assert "Client authentication failed" in result.json()["error"]["message"]
    assert ernie.model_requests == []


def test_error_mid_stream(world: World, channel: Channel, ernie: FakeBaidu) -> None:
    ernie.scenario = "error_mid_stream"

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    events = result.events
    assert events[-1]["error"]["code"] == 336100
    assert "[DONE]" not in events
    world.refresh()
    assert Log.objects.get().completion_tokens > 0  # billed for what was generated


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(world: World, channel: Channel, ernie: FakeBaidu, encoding: str) -> None:
    payload = {"model": "Embedding-V1", "input": ["今天", "天气"], "encoding_format": encoding}

    result = world.client.post("/v1/embeddings", payload)

    assert result.status == 200, result.body
    assert ernie.last_request.path.endswith("/embeddings/embedding-v1")
    assert ernie.last_request.json == {"input": ["今天", "天气"]}
    body = result.json()
    vector = body["data"][1]["embedding"]
    if encoding == "base64":
        vector = list(struct.unpack("<8f", base64.b64decode(vector)))
    assert vector == pytest.approx(baidu_vector("天气"), abs=1e-6)
    assert body["usage"] == {"prompt_tokens": 10, "total_tokens": 10}
    world.refresh()
    assert Log.objects.get().prompt_tokens == 10


def test_images_are_refused(world: World, channel: Channel, ernie: FakeBaidu) -> None:
    result = world.client.post("/v1/images/generations", {"model": MODEL, "prompt": "猫"})

    assert result.status == 400
    assert result.json()["error"]["code"] == "unsupported_mode"
    assert ernie.requests == []
