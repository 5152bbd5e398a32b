"""The Xunfei Spark adaptor: the signed URL checked against iFlytek's documented example,
conversions on Spark's frames, the WebSocket exchange against a fake Spark server (which
verifies the signed URL), then the relay in-process through `Adaptor.send`."""

from __future__ import annotations

import asyncio
import base64
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
import pytest
from django.test import override_settings

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from relay.adaptors import adaptor_for
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.xunfei import (
    SparkSocket,
    XunfeiAdaptor,
    XunfeiStream,
    auth_url,
    convert_frames,
    convert_request,
    run_spark,
    spark_domain,
    spark_url,
    spark_version,
)
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from tests.factories import make_channel
from tests.fakes.http_proxy import HttpProxy
from tests.fakes.socks_proxy import SocksProxy
from tests.fakes.xunfei_upstream import FakeXunfei
from tests.relay.conftest import World

MODEL = "Spark-Max"
APP_ID, API_SECRET, API_KEY = "fakeapp", "fakeapisecret", "fakeapikey"
KEY = f"{APP_ID}|{API_SECRET}|{API_KEY}"
ADAPTOR = XunfeiAdaptor()
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


def make_channel_info(base_url: str = "", key: str = KEY, **config: object) -> ChannelInfo:
    return ChannelInfo(
        id=1,
        type=ChannelType.XUNFEI,
        name="xunfei",
        key=key,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(MODEL,),
        model_mapping={},
        config=dict(config),
        system_prompt="",
        other="",
    )


def make_attempt(
    *,
    mode: RelayMode = RelayMode.CHAT,
    stream: bool = False,
    model: str = MODEL,
    base_url: str = "",
    key: str = KEY,
    client_body: dict[str, Any] | None = None,
) -> Attempt:
    request = Request(
        method="POST",
        path=mode.upstream_path,
        query_string=b"",
        headers={},
        body=orjson.dumps(client_body or {}),
        client_ip="127.0.0.1",
        request_id="test-request",
    )
    return Attempt(make_channel_info(base_url, key), mode, model, stream, request)


def chat(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def frame(text: str, status: int = 1, sid: str = "cht01", **usage: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "header": {"code": 0, "message": "Success", "sid": sid, "status": status},
        "payload": {
            "choices": {
                "status": status,
                "seq": 0,
                "text": [{"content": text, "role": "assistant", "index": 0}],
            }
        },
    }
    if usage:
        data["payload"]["usage"] = {"text": usage}
    return data


def refusal(code: int, message: str) -> dict[str, Any]:
    return {"header": {"code": code, "message": message, "sid": "cht01", "status": 2}}


USAGE = {"question_tokens": 4, "prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}


# ---------------------------------------------------------------------- URL and versions


def test_the_auth_url_matches_iflyteks_documented_example() -> None:
    url = auth_url(
        "wss://spark-api.xf-yun.com/v1.1/chat",
        "addd2272b6d8b7c8abdd79531420ca3b",
        "MjlmNzkzNmZkMDQ2OTc0ZDdmNGE2ZTZi",
        datetime(2023, 5, 5, 10, 43, 39, tzinfo=UTC),
    )

    assert url == (
        "wss://spark-api.xf-yun.com/v1.1/chat?authorization=YXBpX2tleT0iYWRkZDIyNzJiNmQ4YjdjOG"
        "FiZGQ3OTUzMTQyMGNhM2IiLCBhbGdvcml0aG09ImhtYWMtc2hhMjU2IiwgaGVhZGVycz0iaG9zdCBkYXRlIHJl"
        "cXVlc3QtbGluZSIsIHNpZ25hdHVyZT0iejVnSGR1M3B4VlY0QURNeWs0Njd3T1dEUTlxNkJRelIzbmZNVGpj"
        "L0RhUT0i&date=Fri%2C+05+May+2023+10%3A43%3A39+GMT&host=spark-api.xf-yun.com"
    )
    # The signature inside is the documented one.
    authorization = parse_qs(urlsplit(url).query)["authorization"][0]
    assert 'signature="z5gHdu3pxVV4ADMyk467wOWDQ9q6BQzR3nfMTjc/DaQ="' in (
        base64.b64decode(authorization).decode()
    )


@pytest.mark.parametrize(
    ("model", "config", "version", "domain", "path"),
    [
        ("Spark-Lite", {}, "v1.1", "lite", "/v1.1/chat"),
        ("Spark-Pro", {}, "v3.1", "generalv3", "/v3.1/chat"),
        ("Spark-Pro-128K", {}, "v3.1-128K", "pro-128k", "/chat/pro-128k"),
        ("Spark-Max", {}, "v3.5", "generalv3.5", "/v3.5/chat"),
        ("Spark-Max-32K", {}, "v3.5-32K", "max-32k", "/chat/max-32k"),
        ("Spark-4.0-Ultra", {}, "v4.0", "4.0Ultra", "/v4.0/chat"),
        ("SparkDesk-v3.5", {}, "v3.5", "generalv3.5", "/v3.5/chat"),
        ("SparkDesk-v2.1", {}, "v2.1", "generalv2", "/v2.1/chat"),
        ("SparkDesk-v4.0", {}, "v4.0", "4.0Ultra", "/v4.0/chat"),
        ("SparkDesk", {"api_version": "v3.1"}, "v3.1", "generalv3", "/v3.1/chat"),
        ("SparkDesk", {}, "v1.1", "lite", "/v1.1/chat"),
    ],
)
def test_versions_domains_and_paths(
    model: str, config: dict[str, object], version: str, domain: str, path: str
) -> None:
    assert spark_version(model, config) == version
    assert spark_domain(version) == domain
    assert spark_url("wss://spark-api.xf-yun.com", version) == (f"wss://spark-api.xf-yun.com{path}")


def test_a_channel_base_url_replaces_the_host() -> None:
    assert spark_url("http://127.0.0.1:9/", "v3.5") == "ws://127.0.0.1:9/v3.5/chat"
    assert spark_url("https://proxy.example", "v1.1") == "wss://proxy.example/v1.1/chat"


def test_build_request_signs_the_url_and_carries_the_frame() -> None:
    payload = chat(user("Hi"))
    call = ADAPTOR.build_request(make_attempt(), OpenAIBody(orjson.dumps(payload), payload))

    assert call.method == "GET"
    parts = urlsplit(call.url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "spark-api.xf-yun.com", "/v3.5/chat")
    assert set(parse_qs(parts.query)) == {"authorization", "date", "host"}
    assert orjson.loads(call.content) == {
        "header": {"app_id": APP_ID},
        "parameter": {"chat": {"domain": "generalv3.5"}},
        "payload": {"message": {"text": [{"role": "user", "content": "Hi"}]}},
    }


def test_a_malformed_key_fails_the_channel() -> None:
    payload = chat(user("Hi"))
    with pytest.raises(UpstreamFailure) as caught:
        ADAPTOR.build_request(make_attempt(key="a|b"), OpenAIBody(b"{}", payload))
    assert not caught.value.from_upstream
    assert "APPID|APISecret|APIKey" in caught.value.error.message


def test_xunfei_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.XUNFEI), XunfeiAdaptor)


@pytest.mark.parametrize("mode", [RelayMode.EMBEDDINGS, RelayMode.IMAGES_GENERATIONS])
def test_other_modes_are_refused(mode: RelayMode) -> None:
    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_request(make_attempt(mode=mode), OpenAIBody(b"{}", {"input": "x"}))
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")


# ---------------------------------------------------------------------- request frame


def test_parameters_are_clamped_into_sparks_ranges() -> None:
    chat_params = convert_request(
        chat(user("x"), temperature=0, max_tokens=100_000, top_k=10, user="u" * 40),
        APP_ID,
        "lite",
    )
    assert chat_params["parameter"]["chat"] == {
        "domain": "lite",
        "temperature": 0.01,
        "max_tokens": 4096,
        "top_k": 6,
    }
    assert chat_params["header"] == {"app_id": APP_ID, "uid": "u" * 32}
    hot = convert_request(chat(user("x"), temperature=1.7, max_tokens=9000), APP_ID, "4.0Ultra")
    assert hot["parameter"]["chat"] == {
        "domain": "4.0Ultra",
        "temperature": 1.0,
        "max_tokens": 8192,
    }


def test_history_with_tools_is_told_in_sparks_three_roles() -> None:
    frame_out = convert_request(
        chat(
            {"role": "developer", "content": "Be brief."},
            user([{"type": "text", "text": "Weather in Paris?"}]),
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
            {"role": "assistant", "content": ""},
            tools=[WEATHER_TOOL],
        ),
        APP_ID,
        "generalv3.5",
    )

    assert frame_out["payload"]["message"]["text"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": '{"function_call":{"name":"get_weather","arguments":"{\\"location\\":'
            '\\"Paris\\"}"}}',
        },
        {"role": "user", "content": "22C"},
    ]
    assert frame_out["payload"]["functions"] == {
        "text": [
            {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": WEATHER_TOOL["function"]["parameters"],
            }
        ]
    }


@pytest.mark.parametrize(
    ("payload", "domain"),
    [
        (chat(user("x"), tools=[WEATHER_TOOL]), "lite"),
        (chat(user("x"), n=2), "generalv3.5"),
        (chat(user([{"type": "image_url", "image_url": {"url": "https://x"}}])), "generalv3.5"),
    ],
)
def test_what_spark_cannot_do_is_a_client_error(payload: dict[str, Any], domain: str) -> None:
    with pytest.raises(RelayError) as caught:
        convert_request(payload, APP_ID, domain)
    assert caught.value.status == 400


def test_tool_choice_none_sends_no_functions() -> None:
    frame_out = convert_request(
        chat(user("x"), tools=[WEATHER_TOOL], tool_choice="none"), "a", "lite"
    )
    assert "functions" not in frame_out["payload"]


# ---------------------------------------------------------------------- answer frames


def test_frames_merge_into_a_completion() -> None:
    result = convert_frames([frame("Hel", 0), frame("lo", 1), frame("!", 2, **USAGE)], MODEL)

    assert result["id"] == "chatcmpl-cht01"
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


def test_a_function_call_becomes_a_tool_call() -> None:
    call = frame("", 2, **USAGE)
    call["payload"]["choices"]["text"][0]["function_call"] = {
        "name": "get_weather",
        "arguments": '{"location": "Paris"}',
    }
    result = convert_frames([call], MODEL)

    message = result["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_cht01",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        }
    ]
    assert result["choices"][0]["finish_reason"] == "tool_calls"


def test_moderation_after_some_text_is_content_filter_and_other_errors_fail() -> None:
    filtered = convert_frames([frame("Hel", 0), refusal(10014, "output audit failed")], MODEL)
    assert filtered["choices"][0]["finish_reason"] == "content_filter"
    assert filtered["choices"][0]["message"]["content"] == "Hel"

    for code, status in ((11202, 429), (11200, 403), (10163, 400), (10013, 400), (10222, 500)):
        with pytest.raises(UpstreamFailure) as caught:
            convert_frames([refusal(code, "why")], MODEL)
        assert (caught.value.error.status, caught.value.error.code) == (status, code)
        assert caught.value.retryable is (status != 400)


def sse_lines(*frames: dict[str, Any]) -> list[bytes]:
    return [line for f in frames for line in (b"data: " + orjson.dumps(f), b"")]


def feed(translator: XunfeiStream, *frames: dict[str, Any]) -> list[Any]:
    out: list[Any] = []
    for line in sse_lines(*frames):
        chunk = translator.accept(line)
        if chunk is None:
            continue
        for block in chunk.split(b"\n\n"):
            if block.startswith(b"data: "):
                payload = block[6:]
                out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def deltas(frames: list[Any]) -> list[dict[str, Any]]:
    return [f["choices"][0]["delta"] for f in frames if isinstance(f, dict) and f["choices"]]


def test_stream_frame_by_frame() -> None:
    translator = XunfeiStream(client_wants_usage=False, model=MODEL)
    chunks = feed(translator, frame("Hel", 0), frame("lo", 1), frame("!", 2, **USAGE))

    assert deltas(chunks) == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo"},
        {"content": "!"},
    ]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1] == "[DONE]"
    assert {c["id"] for c in chunks[:-1]} == {"chatcmpl-cht01"}
    assert translator.usage == {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    assert translator.generated_text == "Hello!"
    assert translator.saw_done


def test_stream_usage_chunk_when_asked_and_function_calls() -> None:
    translator = XunfeiStream(client_wants_usage=True, model=MODEL)
    call = frame("", 2, **USAGE)
    call["payload"]["choices"]["text"][0]["function_call"] = {"name": "f", "arguments": "{}"}

    chunks = feed(translator, call)

    function = {"name": "f", "arguments": "{}"}
    assert chunks[0]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_cht01", "type": "function", "function": function}
    ]
    assert chunks[0]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[1]["usage"]["total_tokens"] == 25
    assert chunks[2] == "[DONE]"


def test_stream_moderation_and_errors() -> None:
    filtered = XunfeiStream(client_wants_usage=False, model=MODEL)
    chunks = feed(filtered, frame("Hel", 0), refusal(10014, "output audit failed"))
    assert chunks[-2]["choices"][0]["finish_reason"] == "content_filter"
    assert chunks[-1] == "[DONE]"

    broken = XunfeiStream(client_wants_usage=False, model=MODEL)
    chunks = feed(broken, frame("Hel", 0), refusal(10222, "network error"))
    assert chunks[-1] == {
        "error": {
            "message": "network error",
            "type": "upstream_error",
            "param": None,
            "code": 10222,
        }
    }
    assert broken.upstream_error is not None
    assert not broken.saw_done


# ---------------------------------------------------------------------- the exchange


@pytest.fixture
def spark() -> Iterator[FakeXunfei]:
    with FakeXunfei(app_id=APP_ID, api_key=API_KEY, api_secret=API_SECRET) as fake:
        yield fake


def exchange(spark: FakeXunfei, payload: dict[str, Any], stream: bool = False) -> Any:
    """Run the adaptor as the relay does: build, send, then read or translate the body."""
    attempt = make_attempt(base_url=spark.base_url, stream=stream, client_body=payload)
    call = ADAPTOR.build_request(attempt, OpenAIBody(orjson.dumps(payload), payload))

    async def run() -> Any:
        response = await ADAPTOR.send(attempt, call)
        if not stream:
            return orjson.loads(ADAPTOR.translate_response(attempt, await response.aread()))
        translator = ADAPTOR.stream_translator(attempt, client_wants_usage=True)
        chunks: list[bytes] = []
        try:
            async for piece in response.aiter_lines():
                out = translator.accept(piece.encode())
                if out is not None:
                    chunks.append(out)
        finally:
            await response.aclose()
        return response.headers["content-type"], b"".join(chunks), translator

    return asyncio.run(run())


def test_run_spark_yields_the_answer_frames(spark: FakeXunfei) -> None:
    async def collect() -> list[dict[str, Any]]:
        channel = make_channel_info(spark.base_url)
        return [f async for f in run_spark(channel, chat(user("Hi"), temperature=0.5))]

    frames = asyncio.run(collect())

    assert "".join(f["payload"]["choices"]["text"][0]["content"] for f in frames) == spark.reply
    assert [f["header"]["status"] for f in frames] == [0, 1, 2]
    sent = spark.last_connection
    assert sent.path == "/v3.5/chat"
    assert sent.refused is None  # the fake verified the signed URL
    assert sent.frame == {
        "header": {"app_id": APP_ID},
        "parameter": {"chat": {"domain": "generalv3.5", "temperature": 0.5}},
        "payload": {"message": {"text": [{"role": "user", "content": "Hi"}]}},
    }


def test_a_normal_answer_through_send(spark: FakeXunfei) -> None:
    result = exchange(spark, chat(user("Hi")))

    assert result["choices"][0]["message"] == {"role": "assistant", "content": spark.reply}
    assert result["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


@pytest.mark.parametrize("kind", ["http", "socks5"])
def test_the_websocket_goes_through_the_relay_proxy(spark: FakeXunfei, kind: str) -> None:
    with HttpProxy() as http_proxy, SocksProxy(username="ws", password="pw") as socks:
        url = http_proxy.url if kind == "http" else socks.url()
        with override_settings(RELAY_PROXY=url):
            result = exchange(spark, chat(user("Hi")))
        # Through the HTTP proxy: one upgraded GET (wss:// would be a CONNECT); SOCKS: a CONNECT.
        through = http_proxy.requests if kind == "http" else socks.connects
    assert result["choices"][0]["message"]["content"] == spark.reply
    assert len(through) == 1, through
    assert spark.last_connection.refused is None


def test_a_stream_through_send(spark: FakeXunfei) -> None:
    content_type, body, translator = exchange(spark, chat(user("Hi"), stream=True), stream=True)

    assert content_type == "text/event-stream"
    assert body.endswith(b"data: [DONE]\n\n")
    assert translator.generated_text == spark.reply
    assert translator.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_a_function_call_through_send(spark: FakeXunfei) -> None:
    spark.scenario = "function_call"
    result = exchange(spark, chat(user("Weather?"), tools=[WEATHER_TOOL]))

    (call,) = result["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": spark.function_args}
    assert spark.last_connection.frame is not None
    assert spark.last_connection.frame["payload"]["functions"]["text"][0]["name"] == "get_weather"


def test_a_wrong_secret_is_refused_at_the_handshake(spark: FakeXunfei) -> None:
    spark.api_secret = "another-secret"
    with pytest.raises(UpstreamFailure) as caught:
        exchange(spark, chat(user("Hi")))
    assert caught.value.error.status == 401
    assert "APPID|APISecret|APIKey" in caught.value.error.message
    assert spark.last_connection.refused == 401


def test_a_stale_date_is_refused_as_clock_skew(spark: FakeXunfei) -> None:
    url = auth_url(
        spark.base_url + "/v3.5/chat", API_KEY, API_SECRET, datetime.now(UTC) - timedelta(hours=1)
    )

    async def attempt() -> None:
        socket = SparkSocket(url, b"{}")
        await socket.open()

    with pytest.raises(UpstreamFailure) as caught:
        asyncio.run(attempt())
    assert caught.value.error.status == 403
    assert spark.last_connection.refused == 403


@pytest.mark.parametrize(("scenario", "status"), [("rate_limited", 429), ("input_refused", 400)])
def test_a_refusal_in_the_first_frame_fails_the_attempt(
    spark: FakeXunfei, scenario: str, status: int
) -> None:
    spark.scenario = scenario
    for stream in (False, True):
        with pytest.raises(UpstreamFailure) as caught:
            exchange(spark, chat(user("Hi"), stream=stream), stream=stream)
        assert caught.value.error.status == status


def test_an_invalid_frame_is_refused_by_the_fake(spark: FakeXunfei) -> None:
    payload = chat(user("Hi"))
    attempt = make_attempt(base_url=spark.base_url)
    call = ADAPTOR.build_request(attempt, OpenAIBody(b"{}", payload))
    broken = orjson.loads(call.content)
    broken["parameter"]["chat"]["domain"] = "lite"
    call.content = orjson.dumps(broken)

    with pytest.raises(UpstreamFailure) as caught:
        asyncio.run(ADAPTOR.send(attempt, call))
    assert (caught.value.error.status, caught.value.error.code) == (400, 10163)


def test_a_dropped_connection_mid_stream_is_a_read_error(spark: FakeXunfei) -> None:
    spark.scenario = "drop_mid"
    with pytest.raises(httpx.ReadError):
        exchange(spark, chat(user("Hi"), stream=True), stream=True)


def test_moderation_mid_stream_finishes_as_content_filter(spark: FakeXunfei) -> None:
    spark.scenario = "content_filter_mid"
    _, body, translator = exchange(spark, chat(user("Hi"), stream=True), stream=True)
    assert b'"finish_reason":"content_filter"' in body
    assert translator.saw_done


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def channel(world: World, spark: FakeXunfei) -> Channel:
    return make_channel(
        type=ChannelType.XUNFEI, base_url=spark.base_url, key=KEY, models="Spark-Max,Spark-Lite"
    )


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}


def expected_quota(prompt: int, completion: int, model: str = MODEL) -> int:
    ratio = pricing.model_ratio(model, ChannelType.XUNFEI)
    completion_ratio = pricing.completion_ratio(model, ChannelType.XUNFEI)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_chat_through_the_relay(world: World, channel: Channel, spark: FakeXunfei) -> None:
    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 200, result.body
    body = result.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": spark.reply}
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.quota == expected_quota(11, 7) == world.user.used_quota


def test_stream_through_the_relay(world: World, channel: Channel, spark: FakeXunfei) -> None:
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200, result.body
    events = result.events
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == spark.reply
    world.refresh()
    log = Log.objects.get()
    assert log.is_stream
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)


def test_a_refusal_through_the_relay_keeps_its_status(
    world: World, channel: Channel, spark: FakeXunfei
) -> None:
    spark.scenario = "rate_limited"

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 429
    assert "licc limit" in result.json()["error"]["message"]
    world.refresh()
    assert Log.objects.count() == 0
