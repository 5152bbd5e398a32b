"""The OpenAI-compatible family: every vendor's URLs, modes and headers from a table, the body
byte for byte, the vendors that hide failures in a 200, then each vendor through the relay
against FakeOpenAI served at that vendor's own paths."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from aiohttp import web

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from oneapi import options
from relay.adaptors import OPENAI_COMPATIBLE_TYPES, adaptor_for
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.openai import OpenAIAdaptor, join_url
from relay.catalog import DEFAULT_BASE_URLS, ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI, RecordedRequest
from tests.relay.conftest import World

T = ChannelType
M = RelayMode
KEY = "sk-vendor-key"
ADAPTOR = OpenAIAdaptor()
ALL_MODES = frozenset(RelayMode)
# What OpenAI and its resellers serve: everything but rerank (OpenAI has none).
GENERIC_MODES = ALL_MODES - {RelayMode.RERANK}

# Where each type's chat request goes with its default base URL (Custom and OpenAI-Compatible
# have none: these two use the base URL in BASES).
CHAT_URLS: dict[int, str] = {
    T.OPENAI: "https://api.openai.com/v1/chat/completions",
    T.API2D: "https://oa.api2d.net/v1/chat/completions",
    T.CLOSEAI: "https://api.closeai-proxy.xyz/v1/chat/completions",
    T.OPENAI_SB: "https://api.openai-sb.com/v1/chat/completions",
    T.OPENAI_MAX: "https://api.openaimax.com/v1/chat/completions",
    T.OHMYGPT: "https://api.ohmygpt.com/v1/chat/completions",
    T.CUSTOM: "https://my-proxy.example.com/v1/chat/completions",
    T.AILS: "https://api.caipacity.com/v1/chat/completions",
    T.AIPROXY: "https://api.aiproxy.io/v1/chat/completions",
    T.API2GPT: "https://api.api2gpt.com/v1/chat/completions",
    T.AIGC2D: "https://api.aigc2d.com/v1/chat/completions",
    T.AI360: "https://ai.360.cn/v1/chat/completions",
    T.OPENROUTER: "https://openrouter.ai/api/v1/chat/completions",
    T.FASTGPT: "https://fastgpt.run/api/openapi/v1/chat/completions",
    T.MOONSHOT: "https://api.moonshot.cn/v1/chat/completions",
    T.BAICHUAN: "https://api.baichuan-ai.com/v1/chat/completions",
    T.MINIMAX: "https://api.minimax.chat/v1/text/chatcompletion_v2",
    T.MISTRAL: "https://api.mistral.ai/v1/chat/completions",
    T.GROQ: "https://api.groq.com/openai/v1/chat/completions",
    T.LINGYIWANWU: "https://api.lingyiwanwu.com/v1/chat/completions",
    T.STEPFUN: "https://api.stepfun.com/v1/chat/completions",
    T.DEEPSEEK: "https://api.deepseek.com/v1/chat/completions",
    T.TOGETHERAI: "https://api.together.xyz/v1/chat/completions",
    T.DOUBAO: "https://ark.cn-beijing.volces.com/api/v3/chat/completions",
    T.NOVITA: "https://api.novita.ai/v3/openai/chat/completions",
    T.SILICONFLOW: "https://api.siliconflow.cn/v1/chat/completions",
    T.XAI: "https://api.x.ai/v1/chat/completions",
    T.BAIDU_V2: "https://qianfan.baidubce.com/v2/chat/completions",
    T.XUNFEI_V2: "https://spark-api-open.xf-yun.com/v1/chat/completions",
    T.ALI_BAILIAN: "https://dashscope.aliyuncs.com/compatible-mode/v1/chat/completions",
    T.OPENAI_COMPATIBLE: "https://llm.internal.example/api/openai/chat/completions",
    T.GEMINI_OPENAI_COMPATIBLE: (
        "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions"
    ),
}
BASES = {
    T.CUSTOM: "https://my-proxy.example.com",
    T.OPENAI_COMPATIBLE: "https://llm.internal.example/api/openai",
}
# The modes each vendor serves (its API reference); the rest are a 400 before any request.
SPEECH, TRANSCRIBE, TRANSLATE = M.AUDIO_SPEECH, M.AUDIO_TRANSCRIPTION, M.AUDIO_TRANSLATION
MODES: dict[int, frozenset[RelayMode]] = {
    T.AI360: frozenset({M.CHAT, M.EMBEDDINGS}),
    T.OPENROUTER: frozenset({M.CHAT, M.COMPLETIONS, M.EMBEDDINGS, M.RESPONSES}),
    T.FASTGPT: frozenset({M.CHAT}),
    T.MOONSHOT: frozenset({M.CHAT}),
    T.BAICHUAN: frozenset({M.CHAT, M.EMBEDDINGS}),
    T.MINIMAX: frozenset({M.CHAT}),
    T.MISTRAL: frozenset({M.CHAT, M.EMBEDDINGS}),
    T.GROQ: frozenset({M.CHAT, SPEECH, TRANSCRIBE, TRANSLATE}),
    T.LINGYIWANWU: frozenset({M.CHAT}),
    T.STEPFUN: frozenset({M.CHAT, M.IMAGES_GENERATIONS, M.IMAGES_EDITS, SPEECH, TRANSCRIBE}),
    T.DEEPSEEK: frozenset({M.CHAT, M.COMPLETIONS}),
    T.TOGETHERAI: frozenset(
        {M.CHAT, M.COMPLETIONS, M.EMBEDDINGS, M.IMAGES_GENERATIONS, SPEECH, TRANSCRIBE, TRANSLATE}
    ),
    T.DOUBAO: frozenset({M.CHAT, M.EMBEDDINGS, M.IMAGES_GENERATIONS}),
    T.NOVITA: frozenset({M.CHAT, M.COMPLETIONS, M.EMBEDDINGS}),
    T.SILICONFLOW: frozenset(
        {M.CHAT, M.COMPLETIONS, M.EMBEDDINGS, M.IMAGES_GENERATIONS, SPEECH, TRANSCRIBE, M.RERANK}
    ),
    T.XAI: frozenset({M.CHAT, M.COMPLETIONS, M.EMBEDDINGS, M.IMAGES_GENERATIONS, M.RESPONSES}),
    T.BAIDU_V2: frozenset({M.CHAT, M.EMBEDDINGS, M.IMAGES_GENERATIONS}),
    T.XUNFEI_V2: frozenset({M.CHAT}),
    T.ALI_BAILIAN: frozenset({M.CHAT, M.COMPLETIONS, M.EMBEDDINGS}),
    T.GEMINI_OPENAI_COMPATIBLE: frozenset({M.CHAT, M.EMBEDDINGS, M.IMAGES_GENERATIONS}),
    # Their base URL can be any server, rerank included.
    T.CUSTOM: ALL_MODES,
    T.OPENAI_COMPATIBLE: ALL_MODES,
}


def make_attempt(
    channel_type: int,
    *,
    mode: RelayMode = RelayMode.CHAT,
    model: str = "some-model",
    base_url: str | None = None,
    stream: bool = False,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=channel_type,
        name="vendor",
        key=KEY,
        base_url=BASES.get(channel_type, "") if base_url is None else base_url,
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
        body=b"",
        client_ip="127.0.0.1",
        request_id="test-request",
    )
    return Attempt(channel, mode, model, stream, request)


def build(attempt: Attempt, raw: bytes = b"{}") -> Any:
    body = OpenAIBody(raw, orjson.loads(raw))
    return adaptor_for(attempt.channel.type).build_request(attempt, body)


def expected_url(channel_type: int, mode: RelayMode) -> str:
    """A mode's URL is the chat URL with the task swapped: every vendor keeps its modes
    side by side under one root."""
    task = mode.upstream_path.removeprefix("/v1/")
    return CHAT_URLS[channel_type].replace("/chat/completions", f"/{task}")


# ---------------------------------------------------------------------- the table


def test_the_table_covers_every_openai_compatible_type() -> None:
    assert set(CHAT_URLS) == set(OPENAI_COMPATIBLE_TYPES)
    assert all(isinstance(adaptor_for(t), OpenAIAdaptor) for t in OPENAI_COMPATIBLE_TYPES)


@pytest.mark.parametrize("channel_type", sorted(CHAT_URLS), ids=lambda t: T(t).name)
@pytest.mark.parametrize("mode", list(RelayMode), ids=lambda m: m.name)
def test_url_of_every_mode_of_every_type(channel_type: int, mode: RelayMode) -> None:
    attempt = make_attempt(channel_type, mode=mode)
    if mode in MODES.get(channel_type, GENERIC_MODES):
        assert build(attempt).url == expected_url(channel_type, mode)
        raw = ADAPTOR.build_raw_request(attempt, b"--b--\r\n", "multipart/form-data; boundary=b")
        assert raw.url == expected_url(channel_type, mode)
        return
    with pytest.raises(RelayError) as refused:
        build(attempt)
    assert refused.value.status == 400
    assert refused.value.code == "unsupported_mode"
    assert mode.upstream_path in refused.value.message
    with pytest.raises(RelayError):
        ADAPTOR.build_raw_request(attempt, b"", "multipart/form-data; boundary=b")


@pytest.mark.parametrize("channel_type", sorted(CHAT_URLS), ids=lambda t: T(t).name)
@pytest.mark.parametrize("stream", [False, True])
def test_headers_and_body_of_every_type(channel_type: int, stream: bool) -> None:
    # Odd spacing, key order and an unknown field: only a byte-for-byte copy keeps them.
    raw = (
        b'{"model":"some-model",  "messages":[{"role":"user","content":"Hi \\u00e9"}],'
        b'"stream":' + (b"true" if stream else b"false") + b',"vendor_extra":{"x":[1,2]}}'
    )
    call = build(make_attempt(channel_type, stream=stream), raw)

    assert call.method == "POST"
    assert call.content == raw
    assert call.headers["Authorization"] == f"Bearer {KEY}"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["Accept"] == ("text/event-stream" if stream else "application/json")
    extra = set(call.headers) - {"Authorization", "Content-Type", "Accept"}
    assert extra == ({"HTTP-Referer", "X-Title"} if channel_type == T.OPENROUTER else set())


def test_unknown_types_on_the_openai_adaptor_serve_every_mode() -> None:
    attempt = make_attempt(990, mode=M.MODERATIONS, base_url="http://h")
    assert ADAPTOR.build_request(attempt, OpenAIBody(b"{}", {})).url == "http://h/v1/moderations"


# ---------------------------------------------------------------------- vendor specifics


@pytest.mark.parametrize(
    ("model", "path"),
    [
        ("bot-20250101-abc", "/api/v3/bots/chat/completions"),
        ("ep-20250101-xyz", "/api/v3/chat/completions"),
        ("doubao-pro-32k", "/api/v3/chat/completions"),
    ],
)
def test_doubao_bots_have_their_own_path(model: str, path: str) -> None:
    url = build(make_attempt(T.DOUBAO, model=model)).url
    assert url == "https://ark.cn-beijing.volces.com" + path


def test_doubao_bot_embeddings_keep_the_embeddings_path() -> None:
    url = build(make_attempt(T.DOUBAO, model="bot-1", mode=M.EMBEDDINGS)).url
    assert url == "https://ark.cn-beijing.volces.com/api/v3/embeddings"


@pytest.mark.parametrize(
    ("channel_type", "base", "url"),
    [
        # The SDK's base URL pasted as the channel's: no doubled version segment.
        (T.OPENAI, "https://api.openai.com/v1", "https://api.openai.com/v1/chat/completions"),
        (T.OPENAI, "https://proxy.example/v1/", "https://proxy.example/v1/chat/completions"),
        (
            T.DOUBAO,
            "https://ark.cn-beijing.volces.com/api/v3",
            "https://ark.cn-beijing.volces.com/api/v3/chat/completions",
        ),
        (
            T.ALI_BAILIAN,
            "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
            "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/chat/completions",
        ),
        (
            T.BAIDU_V2,
            "https://qianfan.baidubce.com/v2",
            "https://qianfan.baidubce.com/v2/chat/completions",
        ),
        (
            T.MINIMAX,
            "https://api.minimaxi.com/v1",
            "https://api.minimaxi.com/v1/text/chatcompletion_v2",
        ),
        (T.GROQ, "https://api.groq.com/openai/v1", "https://api.groq.com/openai/v1/chat/completions"),
        # Taken literally: whatever prefix the server has.
        (T.OPENAI_COMPATIBLE, "http://10.0.0.5:8000/v1", "http://10.0.0.5:8000/v1/chat/completions"),
        (T.OPENAI_COMPATIBLE, "http://10.0.0.5:8000/", "http://10.0.0.5:8000/chat/completions"),
        (T.NOVITA, "https://api.novita.ai/v3/openai/", "https://api.novita.ai/v3/openai/chat/completions"),
        # A path that merely contains a version is left alone.
        (T.OPENAI, "https://x.example/v1beta", "https://x.example/v1beta/v1/chat/completions"),
    ],
)  # fmt: skip
def test_base_url_forms(channel_type: int, base: str, url: str) -> None:
    assert build(make_attempt(channel_type, base_url=base)).url == url


def test_join_url_only_strips_a_prefix_ending_in_a_version() -> None:
    assert join_url("https://h/api", "/api/v3/embeddings") == "https://h/api/api/v3/embeddings"
    assert join_url("https://h/api/v3", "/api/v3/embeddings") == "https://h/api/v3/embeddings"
    assert join_url("https://h", "/v1/x") == "https://h/v1/x"


GATEWAY = "https://gateway.ai.cloudflare.com/v1/0123abcd/my-gateway"


@pytest.mark.parametrize(
    ("channel_type", "base", "mode", "url"),
    [
        (T.OPENAI, f"{GATEWAY}/openai", M.CHAT, f"{GATEWAY}/openai/chat/completions"),
        (T.OPENAI, f"{GATEWAY}/openai", M.EMBEDDINGS, f"{GATEWAY}/openai/embeddings"),
        (
            T.OPENAI,
            f"{GATEWAY}/openai",
            M.AUDIO_TRANSCRIPTION,
            f"{GATEWAY}/openai/audio/transcriptions",
        ),
        (T.GROQ, f"{GATEWAY}/groq", M.CHAT, f"{GATEWAY}/groq/chat/completions"),
        (T.DEEPSEEK, f"{GATEWAY}/deepseek", M.CHAT, f"{GATEWAY}/deepseek/chat/completions"),
        (T.MISTRAL, f"{GATEWAY}/mistral/v1", M.CHAT, f"{GATEWAY}/mistral/v1/chat/completions"),
    ],
)
def test_cloudflare_ai_gateway_urls_have_no_v1(
    channel_type: int, base: str, mode: RelayMode, url: str
) -> None:
    assert build(make_attempt(channel_type, base_url=base, mode=mode)).url == url


def test_openrouter_headers_default_to_one_apis() -> None:
    headers = build(make_attempt(T.OPENROUTER)).headers
    assert headers["HTTP-Referer"] == "https://github.com/songquanpeng/one-api"
    assert headers["X-Title"] == "One API"


@pytest.mark.django_db
def test_openrouter_headers_name_this_site() -> None:
    options.set_option("ServerAddress", "https://gw.example.com")
    options.set_option("SystemName", "My Gateway")
    options.snapshot()  # what every relay request has loaded before building its call
    headers = build(make_attempt(T.OPENROUTER)).headers
    assert headers["HTTP-Referer"] == "https://gw.example.com"
    assert headers["X-Title"] == "My Gateway"


def test_other_types_get_no_openrouter_headers() -> None:
    assert "X-Title" not in build(make_attempt(T.OPENAI)).headers


# ---------------------------------------------------------------------- failures inside a 200


def minimax_reply(status_code: int = 0, status_msg: str = "") -> dict[str, Any]:
    """MiniMax's chatcompletion_v2 answer (platform.minimaxi.com), success or failure."""
    reply: dict[str, Any] = {
        "id": "04ecb5d9b1921ae0fb0e8da9017a5474",
        "created": 1755153113,
        "model": "MiniMax-Text-01",
        "object": "chat.completion",
        "input_sensitive": False,
        "output_sensitive": False,
        "base_resp": {"status_code": status_code, "status_msg": status_msg},
    }
    if status_code == 0:
        reply["choices"] = [
            {
                "finish_reason": "stop",
                "index": 0,
                "message": {"content": "Hello!", "role": "assistant", "name": "MiniMax AI"},
            }
        ]
        reply["usage"] = {"total_tokens": 30, "prompt_tokens": 26, "completion_tokens": 4}
    else:
        reply["choices"] = None
    return reply


def test_minimax_success_passes_through_untouched() -> None:
    raw = orjson.dumps(minimax_reply())
    assert ADAPTOR.translate_response(make_attempt(T.MINIMAX), raw) is raw


@pytest.mark.parametrize(
    ("code", "message", "status", "retryable"),
    [
        (1004, "login fail: Please carry the API secret key", 401, True),
        (1008, "insufficient balance", 403, True),
        (1002, "rate limit exceeded(RPM)", 429, True),
        (2013, "invalid params, messages is empty", 400, False),
        (1000, "unknown error", 500, True),
    ],
)
def test_minimax_failures_in_a_200_become_errors(
    code: int, message: str, status: int, retryable: bool
) -> None:
    raw = orjson.dumps(minimax_reply(code, message))
    with pytest.raises(UpstreamFailure) as caught:
        ADAPTOR.translate_response(make_attempt(T.MINIMAX), raw)
    assert caught.value.error.status == status
    assert caught.value.error.message == message
    assert caught.value.error.code == code
    assert caught.value.retryable is retryable


def test_minimax_base_resp_is_ignored_on_other_types() -> None:
    raw = orjson.dumps(minimax_reply(1004, "login fail"))
    assert ADAPTOR.translate_response(make_attempt(T.OPENAI), raw) is raw


def xunfei_reply(code: int = 0, message: str = "Success") -> dict[str, Any]:
    """Spark's HTTP (OpenAI-style) answer: `code`, `message` and `sid` beside OpenAI's."""
    reply: dict[str, Any] = {"code": code, "message": message, "sid": "cha000b0003@dx1905"}
    if code == 0:
        reply["choices"] = [{"message": {"role": "assistant", "content": "你好"}, "index": 0}]
        reply["usage"] = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    return reply


def test_xunfei_codes() -> None:
    ok = orjson.dumps(xunfei_reply())
    assert ADAPTOR.translate_response(make_attempt(T.XUNFEI_V2), ok) is ok
    for code, status in ((11200, 401), (11202, 429), (10013, 400), (10163, 500)):
        raw = orjson.dumps(xunfei_reply(code, f"error {code}"))
        with pytest.raises(UpstreamFailure) as caught:
            ADAPTOR.translate_response(make_attempt(T.XUNFEI_V2), raw)
        assert (caught.value.error.status, caught.value.error.message) == (status, f"error {code}")


def sse(event: dict[str, Any] | str) -> bytes:
    return b"data: " + (event.encode() if isinstance(event, str) else orjson.dumps(event))


def test_minimax_stream_summary_becomes_an_empty_delta() -> None:
    chunk = {
        "id": "m1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "MiniMax-Text-01",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}],
        "base_resp": {"status_code": 0, "status_msg": ""},
    }
    second = {**chunk, "choices": [{"index": 0, "delta": {"content": "lo!"}}]}
    summary = {**minimax_reply(), "object": "chat.completion"}
    translator = ADAPTOR.stream_translator(make_attempt(T.MINIMAX, stream=True), False)

    frames = [translator.accept(sse(e)) for e in (chunk, second, summary, "[DONE]")]

    events = [orjson.loads(f[6:]) for f in frames[:3] if f is not None]
    assert [e["choices"][0]["delta"] for e in events] == [
        {"role": "assistant", "content": "Hel"},
        {"content": "lo!"},
        {},
    ]
    assert events[2]["object"] == "chat.completion.chunk"
    assert events[2]["choices"][0]["finish_reason"] == "stop"
    assert frames[3] == DONE_FRAME
    assert translator.generated_text == "Hello!"  # the summary's text is not counted twice
    assert translator.usage == {"total_tokens": 30, "prompt_tokens": 26, "completion_tokens": 4}


def test_minimax_stream_failure_is_an_openai_error_frame() -> None:
    translator = ADAPTOR.stream_translator(make_attempt(T.MINIMAX, stream=True), False)
    frame = translator.accept(sse(minimax_reply(1027, "output new_sensitive")))
    assert frame is not None
    assert orjson.loads(frame[6:]) == {
        "error": {
            "message": "output new_sensitive",
            "type": "upstream_error",
            "param": "",
            "code": 1027,
        }
    }
    assert translator.upstream_error is not None


def test_xunfei_stream_chunks_pass_and_failures_stop() -> None:
    translator = ADAPTOR.stream_translator(make_attempt(T.XUNFEI_V2, stream=True), False)
    chunk = {
        "code": 0,
        "message": "Success",
        "sid": "cha1",
        "id": "cha1",
        "created": 1,
        "choices": [{"delta": {"role": "assistant", "content": "你好"}, "index": 0}],
    }
    assert translator.accept(sse(chunk)) == sse(chunk) + b"\n\n"
    frame = translator.accept(sse({"code": 10013, "message": "input content review failed"}))
    assert frame is not None and b"input content review failed" in frame
    assert translator.upstream_error == {"message": "input content review failed", "code": 10013}


# ---------------------------------------------------------------------- a vendor-shaped fake


class VendorFake(FakeOpenAI):
    """FakeOpenAI answering at a vendor's own paths only (vendor path -> OpenAI path);
    anything else is a 404, as the vendor's server would answer."""

    def __init__(self, paths: dict[str, str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.paths = paths

    async def _dispatch(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        target = self.paths.get(request.path)
        if target is None:
            message = f"Invalid URL ({request.method} {request.path})"
            return self._error(404, message, "invalid_request_error", None)
        moved: Any = _AtPath(request, target)
        return await super()._dispatch(moved, recorded, scenario)


class _AtPath:
    """A request seen at another path (aiohttp cannot clone a request whose body was read);
    everything else, the transport included, is the real request's."""

    def __init__(self, request: web.Request, path: str) -> None:
        self._request = request
        self.path = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def vendor_paths(channel_type: int) -> dict[str, str]:
    """The path of every mode the type serves, as its vendor's server has them."""
    return {
        urlsplit(expected_url(channel_type, mode)).path: mode.upstream_path
        for mode in MODES.get(channel_type, GENERIC_MODES)
    }


def vendor_base(fake: FakeOpenAI, channel_type: int) -> str:
    """The type's base URL with the fake standing in for the vendor's host."""
    base = BASES.get(channel_type) or DEFAULT_BASE_URLS[channel_type]
    return fake.base_url + urlsplit(base).path


MODEL = "vendor-model-x"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.fixture
def vendor(request: pytest.FixtureRequest) -> Iterator[tuple[int, VendorFake]]:
    channel_type = request.param
    with VendorFake(vendor_paths(channel_type), api_key=KEY) as fake:
        yield channel_type, fake


def vendor_channel(channel_type: int, fake: VendorFake, models: str = MODEL) -> Channel:
    return make_channel(
        type=channel_type, base_url=vendor_base(fake, channel_type), key=KEY, models=models
    )


def quota_for(channel_type: int, prompt: int, completion: int, model: str = MODEL) -> int:
    ratio = pricing.model_ratio(model, channel_type)
    completion_ratio = pricing.completion_ratio(model, channel_type)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


@pytest.mark.parametrize("vendor", sorted(CHAT_URLS), ids=lambda t: T(t).name, indirect=True)
def test_chat_of_every_type_through_the_relay(world: World, vendor: tuple[int, VendorFake]) -> None:
    channel_type, fake = vendor
    channel = vendor_channel(channel_type, fake)
    raw = b'{"model": "vendor-model-x", "messages": [{"role": "user", "content": "Hello there"}]}'

    result = world.client.request("POST", "/v1/chat/completions", body=raw)

    assert result.status == 200, result.body
    sent = fake.last_request
    assert sent.path == urlsplit(CHAT_URLS[channel_type]).path
    assert sent.body == raw  # byte for byte
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert ("x-title" in sent.headers) is (channel_type == T.OPENROUTER)
    assert result.json()["choices"][0]["message"]["content"] == fake.reply
    world.refresh()
    log = Log.objects.get()
    assert log.channel_id == channel.pk
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.quota == quota_for(channel_type, 11, 7) == world.user.used_quota


@pytest.mark.parametrize(
    "vendor",
    [T.DOUBAO, T.MINIMAX, T.NOVITA, T.GEMINI_OPENAI_COMPATIBLE, T.OPENAI_COMPATIBLE, T.DEEPSEEK],
    ids=lambda t: T(t).name,
    indirect=True,
)
def test_chat_stream_through_the_relay(world: World, vendor: tuple[int, VendorFake]) -> None:
    channel_type, fake = vendor
    vendor_channel(channel_type, fake)
    if channel_type == T.DEEPSEEK:
        fake.scenario = "reasoning"

    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 200, result.body
    assert fake.last_request.path == urlsplit(CHAT_URLS[channel_type]).path
    events = result.events
    assert events[-1] == "[DONE]"
    deltas = [e["choices"][0]["delta"] for e in events[:-1]]
    assert "".join(d.get("content") or "" for d in deltas) == fake.reply
    if channel_type == T.DEEPSEEK:
        assert "".join(d.get("reasoning_content") or "" for d in deltas) == fake.reasoning
    world.refresh()
    assert Log.objects.get().quota == quota_for(channel_type, 11, 7)


@pytest.mark.parametrize("vendor", [T.DOUBAO], indirect=True)
def test_doubao_bot_and_embeddings_through_the_relay(
    world: World, vendor: tuple[int, VendorFake]
) -> None:
    _, fake = vendor
    fake.paths["/api/v3/bots/chat/completions"] = "/v1/chat/completions"
    vendor_channel(T.DOUBAO, fake, models="bot-20250101-abc,doubao-embedding")

    chat = world.client.post("/v1/chat/completions", {**CHAT, "model": "bot-20250101-abc"})
    assert chat.status == 200, chat.body
    assert fake.last_request.path == "/api/v3/bots/chat/completions"

    embedding = world.client.post("/v1/embeddings", {"model": "doubao-embedding", "input": "hello"})
    assert embedding.status == 200, embedding.body
    assert fake.last_request.path == "/api/v3/embeddings"
    assert len(embedding.json()["data"]) == 1


@pytest.mark.parametrize("vendor", [T.GROQ], indirect=True)
def test_groq_transcription_through_the_relay(world: World, vendor: tuple[int, VendorFake]) -> None:
    import httpx

    _, fake = vendor
    vendor_channel(T.GROQ, fake, models="whisper-large-v3")
    request = httpx.Request(
        "POST",
        "http://client.invalid/",
        data={"model": "whisper-large-v3"},
        files={"file": ("a.mp3", b"ID3 audio", "audio/mpeg")},
    )
    body = request.read()
    result = world.client.request(
        "POST",
        "/v1/audio/transcriptions",
        body=body,
        headers={"content-type": request.headers["content-type"]},
    )

    assert result.status == 200, result.body
    assert fake.last_request.path == "/openai/v1/audio/transcriptions"
    assert fake.last_request.body == body


@pytest.mark.parametrize("vendor", [T.MOONSHOT], indirect=True)
def test_a_mode_the_vendor_lacks_is_a_400_without_a_request(
    world: World, vendor: tuple[int, VendorFake]
) -> None:
    _, fake = vendor
    vendor_channel(T.MOONSHOT, fake, models="moonshot-embed")
    result = world.client.post("/v1/embeddings", {"model": "moonshot-embed", "input": "x"})

    assert result.status == 400
    error = result.json()["error"]
    assert error["code"] == "unsupported_mode"
    assert "/v1/embeddings" in error["message"]
    assert fake.requests == []
    world.refresh()
    assert world.user.used_quota == 0


class MiniMaxFailing(VendorFake):
    """MiniMax refusing in a 200, as it does for auth and balance problems."""

    async def _dispatch(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        return web.json_response(minimax_reply(1008, "insufficient balance"))


def test_minimax_failure_in_a_200_is_not_billed(world: World) -> None:
    with MiniMaxFailing(vendor_paths(T.MINIMAX), api_key=KEY) as fake:
        vendor_channel(T.MINIMAX, fake)
        for payload in (CHAT, {**CHAT, "stream": True}):
            result = world.client.post("/v1/chat/completions", payload)
            assert result.status == 403, result.body
            assert "insufficient balance" in result.json()["error"]["message"]
    world.refresh()
    assert world.user.used_quota == 0
    assert not Log.objects.exists()


def test_vendor_fake_is_strict_about_paths() -> None:
    import httpx

    with VendorFake(vendor_paths(T.DOUBAO), api_key=KEY) as fake:
        headers = {"Authorization": f"Bearer {KEY}"}
        wrong = httpx.post(f"{fake.base_url}/v1/chat/completions", json=CHAT, headers=headers)
        right = httpx.post(f"{fake.base_url}/api/v3/chat/completions", json=CHAT, headers=headers)
    assert wrong.status_code == 404
    assert right.status_code == 200
    assert json.loads(right.text)["model"] == MODEL
