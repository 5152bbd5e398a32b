"""The Tencent Hunyuan adaptor: TC3 signing checked against Tencent's published example,
conversions on Hunyuan's wire format, then the relay in-process against a fake Hunyuan."""

from __future__ import annotations

import hashlib
import math
import threading
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
from relay.adaptors import tencent as tencent_module
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.tencent import (
    Credentials,
    SigningKeyCache,
    TencentAdaptor,
    TencentStream,
    canonical_request,
    derive_signing_key,
    parse_key,
    tc3_authorization,
)
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from tests.factories import make_channel
from tests.fakes.tencent_upstream import FakeTencent, expected_signature, hunyuan_vector
from tests.relay.conftest import World

MODEL = "hunyuan-lite"
SECRET_ID = "AKIDfakeTencentSecretId"
SECRET_KEY = "fakeTencentSecretKey"
KEY = f"1300000000|{SECRET_ID}|{SECRET_KEY}"
ADAPTOR = TencentAdaptor()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}

# Tencent's signature v3 document works one request through: DescribeInstances on CVM.
DOC_SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******"
DOC_SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3*******"
DOC_TIMESTAMP = 1551113065
DOC_PAYLOAD = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
DOC_HEADERS = {"content-type": "application/json; charset=utf-8", "host": "cvm.tencentcloudapi.com"}


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
        type=ChannelType.TENCENT,
        name="tencent",
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


def build(payload: dict[str, Any], **attempt: Any) -> tuple[str, dict[str, str], bytes]:
    body = OpenAIBody(orjson.dumps(payload), dict(payload))
    call = ADAPTOR.build_request(make_attempt(**attempt), body)
    return call.url, call.headers, call.content


def upstream_body(payload: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    return orjson.loads(build(payload, **attempt)[2])


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def translate(response: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    wrapped = orjson.dumps({"Response": response})
    return orjson.loads(ADAPTOR.translate_response(make_attempt(**attempt), wrapped))


# ---------------------------------------------------------------------- TC3 signing


def test_the_signer_reproduces_tencents_published_example() -> None:
    assert hashlib.sha256(DOC_PAYLOAD).hexdigest() == (
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    canonical = canonical_request(
        "POST", "/", "", DOC_HEADERS, ("content-type", "host"), DOC_PAYLOAD
    )
    assert canonical == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n"
        "\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )

    authorization = tc3_authorization(
        credentials=Credentials(DOC_SECRET_ID, DOC_SECRET_KEY),
        service="cvm",
        timestamp=DOC_TIMESTAMP,
        headers=DOC_HEADERS,
        payload=DOC_PAYLOAD,
    )

    assert authorization == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


def test_signed_header_values_are_lower_cased_as_tencent_requires() -> None:
    upper = tc3_authorization(
        credentials=Credentials("id", "key"),
        service="hunyuan",
        timestamp=DOC_TIMESTAMP,
        headers={"Content-Type": "application/json", "Host": "h", "X-TC-Action": "ChatCompletions"},
        payload=b"{}",
    )
    lower = tc3_authorization(
        credentials=Credentials("id", "key"),
        service="hunyuan",
        timestamp=DOC_TIMESTAMP,
        headers={"content-type": "application/json", "host": "h", "x-tc-action": "chatcompletions"},
        payload=b"{}",
    )
    assert upper == lower
    assert "SignedHeaders=content-type;host;x-tc-action," in upper


def test_the_signing_key_is_derived_once_a_day_per_secret() -> None:
    cache = SigningKeyCache()

    first = cache.get("secret", "2024-05-01", "hunyuan")
    again = cache.get("secret", "2024-05-01", "hunyuan")
    assert first == again == derive_signing_key("secret", "2024-05-01", "hunyuan")
    assert cache.derivations == 1

    other_secret = cache.get("other", "2024-05-01", "hunyuan")
    next_day = cache.get("secret", "2024-05-02", "hunyuan")
    assert cache.derivations == 3
    assert len({first, other_secret, next_day}) == 3
    assert next_day == derive_signing_key("secret", "2024-05-02", "hunyuan")


def test_the_signing_key_cache_is_safe_under_concurrency() -> None:
    cache = SigningKeyCache()
    barrier = threading.Barrier(8)
    keys: list[bytes] = []

    def sign() -> None:
        barrier.wait()
        for _ in range(200):
            keys.append(cache.get("secret", "2024-05-01", "hunyuan"))

    threads = [threading.Thread(target=sign) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(keys) == 1600
    assert set(keys) == {derive_signing_key("secret", "2024-05-01", "hunyuan")}
    assert cache.derivations == 1


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (KEY, Credentials(SECRET_ID, SECRET_KEY)),
        (f"{SECRET_ID}|{SECRET_KEY}", Credentials(SECRET_ID, SECRET_KEY)),
        (f" 1 | {SECRET_ID} | {SECRET_KEY} ", Credentials(SECRET_ID, SECRET_KEY)),
    ],
)
def test_key_formats(key: str, expected: Credentials) -> None:
    assert parse_key(key) == expected


def test_a_malformed_key_fails_the_channel_not_the_request() -> None:
    with pytest.raises(UpstreamFailure) as caught:
        build(chat(user("x")), key="just-one-part")
    assert caught.value.retryable
    assert not caught.value.from_upstream
    assert "AppId|SecretId|SecretKey" in caught.value.error.message


def test_the_request_is_signed_as_the_fake_verifies_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tencent_module, "now", lambda: DOC_TIMESTAMP)
    url, headers, content = build(
        chat(user("Hi")), base_url="http://127.0.0.1:9/", config={"region": "ap-guangzhou"}
    )

    assert url == "http://127.0.0.1:9/"
    assert headers["Content-Type"] == "application/json"
    assert headers["Host"] == "127.0.0.1:9"
    assert headers["X-TC-Action"] == "ChatCompletions"
    assert headers["X-TC-Version"] == "2023-09-01"
    assert headers["X-TC-Timestamp"] == str(DOC_TIMESTAMP)
    assert headers["X-TC-Region"] == "ap-guangzhou"
    prefix = f"TC3-HMAC-SHA256 Credential={SECRET_ID}/2019-02-25/hunyuan/tc3_request, "
    assert headers["Authorization"].startswith(
        prefix + "SignedHeaders=content-type;host;x-tc-action"
    )
    received = {name.lower(): value for name, value in headers.items()}
    signature = expected_signature(
        SECRET_KEY, received, ["content-type", "host", "x-tc-action"], content, DOC_TIMESTAMP
    )
    assert headers["Authorization"].endswith(f"Signature={signature}")


def test_the_default_host_is_hunyuans() -> None:
    url, headers, _ = build(chat(user("Hi")))
    assert url == "https://hunyuan.tencentcloudapi.com/"
    assert headers["Host"] == "hunyuan.tencentcloudapi.com"
    assert "X-TC-Region" not in headers


def test_tencent_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.TENCENT), TencentAdaptor)


# ---------------------------------------------------------------------- requests


def test_a_plain_request() -> None:
    assert upstream_body(chat(user("Hi"))) == {
        "Model": MODEL,
        "Messages": [{"Role": "user", "Content": "Hi"}],
        "Stream": False,
    }
    assert upstream_body(chat(user("Hi"), stream=True), stream=True)["Stream"] is True


def test_sampling_parameters_are_clamped() -> None:
    body = upstream_body(
        chat(user("x"), temperature=3, top_p=1.5, stop="END", seed=42, max_tokens=100)
    )
    assert body["Temperature"] == 2.0
    assert body["TopP"] == 1.0
    assert body["Stop"] == ["END"]
    assert body["Seed"] == 42
    assert "MaxTokens" not in body  # Hunyuan has no output limit parameter


def test_system_prompts_join_and_consecutive_turns_merge() -> None:
    body = upstream_body(
        chat(
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Be kind."},
            user("Hello"),
            user([{"type": "text", "text": "Are you there?"}]),
        )
    )
    assert body["Messages"] == [
        {"Role": "system", "Content": "Be brief.\nBe kind."},
        {"Role": "user", "Content": "Hello\nAre you there?"},
    ]


def test_tool_calls_results_and_tools() -> None:
    body = upstream_body(
        chat(
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
            {"role": "tool", "tool_call_id": "call_1", "content": "22C"},
            tools=[WEATHER_TOOL],
            tool_choice="auto",
        )
    )

    assert body["Messages"][1:] == [
        {
            "Role": "assistant",
            "Content": "",
            "ToolCalls": [
                {
                    "Id": "call_1",
                    "Type": "function",
                    "Function": {"Name": "get_weather", "Arguments": '{"location":"Paris"}'},
                }
            ],
        },
        {"Role": "tool", "Content": "22C", "ToolCallId": "call_1"},
    ]
    assert body["Tools"] == [
        {
            "Type": "function",
            "Function": {
                "Name": "get_weather",
                "Parameters": '{"type":"object","properties":{"location":{"type":"string"}}}',
                "Description": "Current weather in a city",
            },
        }
    ]
    assert body["ToolChoice"] == "auto"


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_forcing_a_tool_is_a_custom_tool_choice(choice: Any) -> None:
    body = upstream_body(chat(user("x"), tools=[WEATHER_TOOL], tool_choice=choice))
    assert body["ToolChoice"] == "custom"
    assert body["CustomTool"] == body["Tools"][0]


def test_images_become_contents() -> None:
    body = upstream_body(
        chat(
            user(
                [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
                ]
            ),
            model="hunyuan-vision",
        ),
        model="hunyuan-vision",
    )
    assert body["Messages"] == [
        {
            "Role": "user",
            "Contents": [
                {"Type": "text", "Text": "What is this?"},
                {"Type": "image_url", "ImageUrl": {"Url": "https://x/cat.png"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    "fields",
    [
        {"n": 2},
        {"response_format": {"type": "json_object"}},
        {
            "tools": [WEATHER_TOOL, {"type": "function", "function": {"name": "b"}}],
            "tool_choice": "required",
        },
    ],
)
def test_what_hunyuan_cannot_do_is_a_client_error(fields: dict[str, Any]) -> None:
    with pytest.raises(RelayError) as caught:
        upstream_body(chat(user("x"), **fields))
    assert caught.value.status == 400


def test_embeddings_request_and_refusals() -> None:
    url, headers, content = build(
        {"model": "hunyuan-embedding", "input": ["a", "b"]},
        mode=RelayMode.EMBEDDINGS,
        model="hunyuan-embedding",
    )
    assert headers["X-TC-Action"] == "GetEmbedding"
    assert orjson.loads(content) == {"InputList": ["a", "b"]}
    assert upstream_body({"input": "a"}, mode=RelayMode.EMBEDDINGS) == {"InputList": ["a"]}
    for payload in ({"input": [[1, 2]]}, {"input": "a", "dimensions": 256}):
        with pytest.raises(RelayError):
            upstream_body(payload, mode=RelayMode.EMBEDDINGS)


@pytest.mark.parametrize("mode", [RelayMode.COMPLETIONS, RelayMode.IMAGES_GENERATIONS])
def test_other_modes_are_refused(mode: RelayMode) -> None:
    with pytest.raises(RelayError) as caught:
        upstream_body({"model": MODEL, "prompt": "x"}, mode=mode)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")


# ---------------------------------------------------------------------- responses


def answer(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {
        "RequestId": "req-1",
        "Note": "AI",
        "Choices": [{"Index": 0, "Message": message, "FinishReason": finish}],
        "Created": 1715673394,
        "Id": "5f9c",
        "Usage": {"PromptTokens": 20, "CompletionTokens": 5, "TotalTokens": 25},
    }


def test_text_response_and_usage() -> None:
    result = translate(answer({"Role": "assistant", "Content": "Hello!"}))

    assert result == {
        "id": "chatcmpl-5f9c",
        "object": "chat.completion",
        "created": 1715673394,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25},
    }


def test_tool_calls_and_moderation() -> None:
    function = {"Name": "get_weather", "Arguments": '{"location":"Paris"}'}
    calls = [{"Id": "call_3", "Type": "function", "Function": function}]
    called = translate(
        answer({"Role": "assistant", "Content": "", "ToolCalls": calls}, "tool_calls")
    )
    filtered = translate(answer({"Role": "assistant", "Content": "..."}, "sensitive"))

    assert called["choices"][0]["message"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_3",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"location":"Paris"}'},
            }
        ],
    }
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    assert filtered["choices"][0]["finish_reason"] == "content_filter"


@pytest.mark.parametrize(
    ("code", "status", "retryable"),
    [
        ("AuthFailure.SignatureFailure", 401, True),
        ("RequestLimitExceeded", 429, True),
        ("LimitExceeded.QPS", 429, True),
        ("FailedOperation.ServiceNotActivated", 403, True),
        ("InvalidParameterValue", 400, False),
        ("InternalError", 500, True),
    ],
)
def test_errors_in_the_response_fail_the_attempt(code: str, status: int, retryable: bool) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        translate({"Error": {"Code": code, "Message": "why"}, "RequestId": "r"})
    assert (caught.value.error.status, caught.value.error.code) == (status, code)
    assert caught.value.error.message == "why"
    assert caught.value.retryable is retryable


def test_embeddings_response() -> None:
    data = {
        "Data": [{"Embedding": [0.5, 0.25], "Index": 0, "Object": "embedding"}],
        "Usage": {"PromptTokens": 3, "TotalTokens": 3},
        "RequestId": "r",
    }
    result = translate(data, mode=RelayMode.EMBEDDINGS, model="hunyuan-embedding")
    assert result == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "model": "hunyuan-embedding",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }


def test_bodies_without_a_response_pass_through() -> None:
    assert ADAPTOR.translate_response(make_attempt(), b"not json") == b"not json"
    assert ADAPTOR.translate_response(make_attempt(), b'{"a": 1}') == b'{"a": 1}'


# ---------------------------------------------------------------------- stream


def event(delta: dict[str, Any], finish: str = "", completion: int = 1, **extra: Any) -> dict:
    return {
        "Note": "AI",
        "Choices": [{"Delta": delta, "FinishReason": finish}],
        "Created": 1715673394,
        "Id": "5f9c",
        "Usage": {
            "PromptTokens": 20,
            "CompletionTokens": completion,
            "TotalTokens": 20 + completion,
        },
        **extra,
    }


def feed(translator: TencentStream, *events: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for data in events:
        for line in (b"data: " + orjson.dumps(data), b""):
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
    translator = TencentStream(client_wants_usage=False, model=MODEL)
    frames = feed(
        translator,
        event({"Role": "assistant", "Content": "Hel"}),
        event({"Role": "assistant", "Content": "lo"}, completion=2),
        event({"Role": "assistant", "Content": "!"}, "stop", completion=3),
    )

    assert deltas(frames) == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {"content": "!"},
    ]
    assert frames[-2]["choices"][0]["finish_reason"] == "stop"
    assert frames[-1] == "[DONE]"
    assert {f["id"] for f in frames[:-1]} == {"chatcmpl-5f9c"}
    assert frames[0]["created"] == 1715673394
    assert translator.usage == {"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23}
    assert translator.generated_text == "Hello!"
    assert translator.saw_done


def test_usage_chunk_only_when_asked() -> None:
    translator = TencentStream(client_wants_usage=True, model=MODEL)
    frames = feed(translator, event({"Role": "assistant", "Content": "Hi"}, "stop", completion=4))
    assert frames[-2]["usage"] == {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24}
    assert frames[-2]["choices"] == []


def test_tool_call_pieces_merge_by_id() -> None:
    translator = TencentStream(client_wants_usage=False, model=MODEL)

    def piece(call_id: str, name: str, arguments: str) -> dict[str, Any]:
        call = {
            "Id": call_id,
            "Type": "function",
            "Function": {"Name": name, "Arguments": arguments},
        }
        return event({"Role": "assistant", "Content": "", "ToolCalls": [call]})

    frames = feed(
        translator,
        piece("call_a", "get_weather", '{"location":'),
        piece("call_a", "", ' "Paris"}'),
        piece("call_b", "get_time", "{}"),
        event({"Role": "assistant", "Content": ""}, "tool_calls"),
    )

    calls = [call for d in deltas(frames) for call in d.get("tool_calls") or ()]
    assert calls == [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":'},
        },
        {"index": 0, "function": {"arguments": ' "Paris"}'}},
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": "{}"},
        },
    ]
    assert frames[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_moderation_finishes_the_stream_as_content_filter() -> None:
    translator = TencentStream(client_wants_usage=False, model=MODEL)
    frames = feed(translator, event({"Role": "assistant", "Content": "..."}, "sensitive"))
    assert frames[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert frames[-1] == "[DONE]"


def test_an_error_event_becomes_an_openai_error_frame() -> None:
    translator = TencentStream(client_wants_usage=False, model=MODEL)
    feed(translator, event({"Role": "assistant", "Content": "Hi"}))
    broken = {"Id": "5f9c", "ErrorMsg": {"Msg": "Internal service error.", "Code": 4000}}

    frames = feed(translator, broken)

    assert frames == [
        {
            "error": {
                "message": "Internal service error.",
                "type": "upstream_error",
                "param": None,
                "code": 4000,
            }
        }
    ]
    assert translator.upstream_error is not None
    assert not translator.saw_done


# ---------------------------------------------------------------------- the fake upstream


@pytest.fixture
def tencent() -> Iterator[FakeTencent]:
    with FakeTencent(secret_id=SECRET_ID, secret_key=SECRET_KEY) as fake:
        yield fake


def post_signed(fake: FakeTencent, payload: Any, key: str = KEY, **override: str) -> Any:
    content = orjson.dumps(payload)
    headers = tencent_module.signed_headers(
        fake.base_url + "/", "ChatCompletions", content, parse_key(key)
    )
    headers.update(override)
    return httpx.post(fake.base_url + "/", content=content, headers=headers).json()["Response"]


GOOD = {"Model": MODEL, "Messages": [{"Role": "user", "Content": "Hi"}]}


@pytest.mark.parametrize(
    ("payload", "key", "override", "code"),
    [
        (GOOD, f"1|{SECRET_ID}|wrong", {}, "AuthFailure.SignatureFailure"),
        (GOOD, f"1|AKIDother|{SECRET_KEY}", {}, "AuthFailure.SecretIdNotFound"),
        (GOOD, KEY, {"X-TC-Timestamp": "1551113065"}, "AuthFailure.SignatureExpire"),
        (GOOD, KEY, {"X-TC-Action": "GetEmbedding"}, "AuthFailure.SignatureFailure"),
        ({**GOOD, "MaxTokens": 5}, KEY, {}, "UnknownParameter"),
        ({**GOOD, "Temperature": 2.5}, KEY, {}, "InvalidParameterValue"),
        (
            {"Model": MODEL, "Messages": [{"Role": "assistant", "Content": "x"}]},
            KEY,
            {},
            "InvalidParameter",
        ),
        (
            {"Model": MODEL, "Messages": [{"Role": "user", "Content": ""}]},
            KEY,
            {},
            "InvalidParameter",
        ),
    ],
)
def test_the_fake_is_as_strict_as_hunyuan(
    tencent: FakeTencent, payload: Any, key: str, override: dict[str, str], code: str
) -> None:
    response = post_signed(tencent, payload, key, **override)
    assert response["Error"]["Code"] == code


def test_the_fake_accepts_a_correctly_signed_request(tencent: FakeTencent) -> None:
    response = post_signed(tencent, GOOD)
    assert response["Choices"][0]["Message"]["Content"] == tencent.reply


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def channel(world: World, tencent: FakeTencent) -> Channel:
    return make_channel(
        type=ChannelType.TENCENT,
        base_url=tencent.base_url,
        key=KEY,
        models="hunyuan-lite,hunyuan-vision,hunyuan-embedding",
    )


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}


def expected_quota(prompt: int, completion: int, model: str = MODEL) -> int:
    ratio = pricing.model_ratio(model, ChannelType.TENCENT)
    completion_ratio = pricing.completion_ratio(model, ChannelType.TENCENT)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_chat_is_converted_both_ways_and_billed_from_usage(
    world: World, channel: Channel, tencent: FakeTencent
) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "temperature": 0.5})

    assert result.status == 200, result.body
    sent = tencent.last_request
    assert sent.action == "ChatCompletions"
    assert sent.json == {
        "Model": MODEL,
        "Messages": [{"Role": "user", "Content": "Hello there"}],
        "Stream": False,
        "Temperature": 0.5,
    }
    body = result.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    assert body["choices"][0]["message"] == {"role": "assistant", "content": tencent.reply}
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.channel_id == channel.pk
    assert log.quota == expected_quota(11, 7) == world.user.used_quota


def test_stream_is_converted_and_billed_from_usage(
    world: World, channel: Channel, tencent: FakeTencent
) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200, result.body
    assert tencent.last_request.json is not None
    assert tencent.last_request.json["Stream"] is True
    events = result.events
    assert events[-1] == "[DONE]"
    assert result.body.count(b"[DONE]") == 1
    chunks = events[:-1]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == tencent.reply
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(not c.get("usage") for c in chunks)
    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.quota == expected_quota(11, 7)


def test_tool_round_trip_through_the_relay(
    world: World, channel: Channel, tencent: FakeTencent
) -> None:
    ask = {**CHAT, "tools": [WEATHER_TOOL]}
    first = world.client.post("/v1/chat/completions", ask).json()
    (call,) = first["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": tencent.function_args}

    messages = [
        *CHAT["messages"],
        first["choices"][0]["message"],
        {"role": "tool", "tool_call_id": call["id"], "content": "22C"},
    ]
    second = world.client.post("/v1/chat/completions", {**ask, "messages": messages})

    assert second.status == 200, second.body
    assert second.json()["choices"][0]["message"]["content"] == tencent.reply
    streamed = world.client.post("/v1/chat/completions", {**ask, "stream": True}).events
    pieces = [c for e in streamed[:-1] for c in e["choices"][0]["delta"].get("tool_calls") or ()]
    assert "".join(p["function"].get("arguments", "") for p in pieces) == tencent.function_args
    assert streamed[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_vision_through_the_relay(world: World, channel: Channel, tencent: FakeTencent) -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x/cat.png"}}
    payload = {
        "model": "hunyuan-vision",
        "messages": [user([image, {"type": "text", "text": "?"}])],
    }

    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    assert tencent.last_request.json is not None
    assert "Contents" in tencent.last_request.json["Messages"][0]


def test_embeddings_through_the_relay(world: World, channel: Channel, tencent: FakeTencent) -> None:
    result = world.client.post(
        "/v1/embeddings", {"model": "hunyuan-embedding", "input": ["one two", "three"]}
    )

    assert result.status == 200, result.body
    assert tencent.last_request.action == "GetEmbedding"
    body = result.json()
    assert body["data"][1]["embedding"] == hunyuan_vector("three")
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (3, 0)


def test_a_wrong_secret_is_a_401_with_tencents_message(world: World, tencent: FakeTencent) -> None:
    make_channel(
        type=ChannelType.TENCENT, base_url=tencent.base_url, key=f"1|{SECRET_ID}|bad", models=MODEL
    )

    for payload in (CHAT, {**CHAT, "stream": True}):
        result = world.client.post("/v1/chat/completions", payload)
        assert result.status == 401
        error = result.json()["error"]
        assert error["code"] == "AuthFailure.SignatureFailure"
        assert error["message"].startswith("The provided credentials could not be validated.")
    world.refresh()
    assert Log.objects.count() == 0


@pytest.mark.parametrize(
    ("scenario", "status"), [("rate_limited", 429), ("not_activated", 403), ("internal", 500)]
)
def test_api_errors_get_their_http_status(
    world: World, channel: Channel, tencent: FakeTencent, scenario: str, status: int
) -> None:
    tencent.scenario = scenario

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == status
    world.refresh()
    assert Log.objects.count() == 0


def test_an_error_mid_stream_reaches_the_client(
    world: World, channel: Channel, tencent: FakeTencent
) -> None:
    tencent.scenario = "error_mid_stream"

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200
    assert result.events[-1]["error"]["message"] == "Internal service error."
    assert b"[DONE]" not in result.body
