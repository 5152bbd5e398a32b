"""The Azure OpenAI adaptor: URLs, versions and headers in isolation, then the relay against a
fake Azure resource as strict as the real one about paths, versions and keys."""

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
from oneapi import options
from relay import usage
from relay.adaptors import adaptor_for
from relay.adaptors.azure import (
    DEFAULT_API_VERSION,
    AzureAdaptor,
    accepts_stream_options,
    api_version,
    deployment_name,
)
from relay.adaptors.base import Attempt, OpenAIBody
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.http import Request
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME, StreamState
from tests.factories import make_channel
from tests.fakes.azure_upstream import FakeAzure
from tests.relay.conftest import World

KEY = "azure-key-0123456789"
BASE = "https://contoso.openai.azure.com"
ADAPTOR = AzureAdaptor()
DEPLOYMENTS = {
    "gpt-35-turbo": "gpt-35-turbo",
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-35-turbo-instruct": "gpt-35-turbo-instruct",
    "text-embedding-3-small": "text-embedding-3-small",
    "dall-e-3": "dall-e-3",
    "whisper-1": "whisper",
    "tts-1": "tts",
    "my.custom-deploy": "gpt-4o-mini",
}
MODELS = (
    "gpt-3.5-turbo,gpt-4o,gpt-3.5-turbo-instruct,text-embedding-3-small,dall-e-3,whisper-1,tts-1"
)


def make_attempt(
    *,
    model: str = "gpt-3.5-turbo",
    mode: RelayMode = RelayMode.CHAT,
    stream: bool = False,
    base_url: str = BASE,
    config: dict[str, object] | None = None,
    other: str = "",
    mapping: dict[str, str] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=ChannelType.AZURE,
        name="azure",
        key=KEY,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(model,),
        model_mapping=mapping or {},
        config=config or {},
        system_prompt="",
        other=other,
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


def body_of(payload: dict[str, Any]) -> OpenAIBody:
    return OpenAIBody(orjson.dumps(payload), dict(payload))


# ---------------------------------------------------------------------- deployments, versions


@pytest.mark.parametrize(
    ("model", "mapping", "deployment"),
    [
        ("gpt-3.5-turbo", {}, "gpt-35-turbo"),
        ("gpt-4.1-mini", {}, "gpt-41-mini"),
        ("gpt-4o", {}, "gpt-4o"),
        # The channel's mapping names the deployment: taken as written, dots and all.
        ("my.custom-deploy", {"gpt-4o-mini": "my.custom-deploy"}, "my.custom-deploy"),
        ("prod-gpt35", {"gpt-3.5-turbo": "prod-gpt35"}, "prod-gpt35"),
    ],
)
def test_deployment_name(model: str, mapping: dict[str, str], deployment: str) -> None:
    assert deployment_name(make_attempt(model=model, mapping=mapping)) == deployment


@pytest.mark.parametrize(
    ("config", "other", "version"),
    [
        ({"api_version": "2024-06-01"}, "2023-05-15", "2024-06-01"),
        ({"api_version": " 2025-01-01-preview "}, "", "2025-01-01-preview"),
        ({}, "2023-05-15", "2023-05-15"),  # the legacy `other` field
        ({"api_version": ""}, " 2024-02-01 ", "2024-02-01"),
        ({"api_version": 7}, "", DEFAULT_API_VERSION),
        ({}, "", DEFAULT_API_VERSION),
    ],
)
def test_api_version_choice(config: dict[str, object], other: str, version: str) -> None:
    assert api_version(make_attempt(config=config, other=other)) == version


def test_default_version_is_a_ga_version() -> None:
    assert DEFAULT_API_VERSION == "2024-10-21"
    assert "preview" not in DEFAULT_API_VERSION


@pytest.mark.parametrize(
    ("version", "accepted"),
    [
        ("2023-05-15", False),
        ("2024-08-01-preview", False),
        ("2024-09-01-preview", True),
        ("2024-10-21", True),
        ("2025-04-01-preview", True),
        ("v1", True),  # not a dated version: left alone
    ],
)
def test_stream_options_acceptance(version: str, accepted: bool) -> None:
    assert accepts_stream_options(version) is accepted


# ---------------------------------------------------------------------- URLs and headers


@pytest.mark.parametrize(
    ("mode", "model", "path"),
    [
        (RelayMode.CHAT, "gpt-3.5-turbo", "/openai/deployments/gpt-35-turbo/chat/completions"),
        (
            RelayMode.COMPLETIONS,
            "gpt-3.5-turbo-instruct",
            "/openai/deployments/gpt-35-turbo-instruct/completions",
        ),
        (
            RelayMode.EMBEDDINGS,
            "text-embedding-3-small",
            "/openai/deployments/text-embedding-3-small/embeddings",
        ),
        (
            RelayMode.IMAGES_GENERATIONS,
            "dall-e-3",
            "/openai/deployments/dall-e-3/images/generations",
        ),
        (RelayMode.IMAGES_EDITS, "gpt-image-1", "/openai/deployments/gpt-image-1/images/edits"),
        (RelayMode.AUDIO_SPEECH, "tts-1", "/openai/deployments/tts-1/audio/speech"),
        (
            RelayMode.AUDIO_TRANSCRIPTION,
            "whisper-1",
            "/openai/deployments/whisper-1/audio/transcriptions",
        ),
        (
            RelayMode.AUDIO_TRANSLATION,
            "whisper-1",
            "/openai/deployments/whisper-1/audio/translations",
        ),
    ],
)
def test_url_of_every_mode(mode: RelayMode, model: str, path: str) -> None:
    call = ADAPTOR.build_request(make_attempt(model=model, mode=mode), body_of({"model": model}))
    assert call.url == f"{BASE}{path}?api-version={DEFAULT_API_VERSION}"
    assert call.method == "POST"


@pytest.mark.parametrize("base", [BASE, BASE + "/", BASE + "/openai", BASE + "/openai/"])
def test_base_url_forms(base: str) -> None:
    call = ADAPTOR.build_request(make_attempt(base_url=base), body_of({}))
    assert call.url == (
        f"{BASE}/openai/deployments/gpt-35-turbo/chat/completions?api-version=2024-10-21"
    )


def test_cloudflare_gateway_replaces_the_deployments_prefix() -> None:
    gateway = "https://gateway.ai.cloudflare.com/v1/acct123/my-gw/azure-openai/contoso"
    attempt = make_attempt(base_url=gateway, config={"api_version": "2024-06-01"})
    call = ADAPTOR.build_request(attempt, body_of({}))
    assert call.url == f"{gateway}/gpt-35-turbo/chat/completions?api-version=2024-06-01"


def test_headers_use_api_key_not_bearer() -> None:
    call = ADAPTOR.build_request(make_attempt(stream=True), body_of({}))
    assert call.headers == {
        "api-key": KEY,
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
    }


def test_multipart_keeps_its_content_type_and_bytes() -> None:
    attempt = make_attempt(model="whisper-1", mode=RelayMode.AUDIO_TRANSCRIPTION)
    call = ADAPTOR.build_raw_request(attempt, b"--b\r\n...", "multipart/form-data; boundary=b")
    assert call.url.startswith(f"{BASE}/openai/deployments/whisper-1/audio/transcriptions?")
    assert call.headers == {"api-key": KEY, "Content-Type": "multipart/form-data; boundary=b"}
    assert call.content == b"--b\r\n..."


@pytest.mark.parametrize(
    "mode", [RelayMode.MODERATIONS, RelayMode.EDITS, RelayMode.IMAGES_VARIATIONS]
)
def test_modes_azure_lacks_are_a_400(mode: RelayMode) -> None:
    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_request(make_attempt(mode=mode), body_of({}))
    assert caught.value.status == 400
    assert caught.value.code == "unsupported_mode"
    assert mode.upstream_path in caught.value.message
    with pytest.raises(RelayError):
        ADAPTOR.build_raw_request(make_attempt(mode=mode), b"", "multipart/form-data")


def test_body_goes_upstream_byte_for_byte() -> None:
    raw = b'{"model": "gpt-3.5-turbo",  "messages": [{"role": "user", "content": "Hi"}], "x": 1}'
    body = OpenAIBody(raw, orjson.loads(raw))
    assert ADAPTOR.build_request(make_attempt(), body).content == raw


def test_stream_options_are_dropped_for_versions_that_refuse_them() -> None:
    payload = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}}
    old = ADAPTOR.build_request(make_attempt(stream=True, other="2024-02-01"), body_of(payload))
    assert orjson.loads(old.content) == {"model": "gpt-4o", "stream": True}
    new = ADAPTOR.build_request(make_attempt(stream=True), body_of(payload))
    assert orjson.loads(new.content) == payload


def test_azure_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.AZURE), AzureAdaptor)


# ---------------------------------------------------------------------- Azure's stream


def azure_stream_lines(include_usage: bool) -> list[bytes]:
    """A real Azure chat stream (api-version 2024-10-21), event by event."""
    filters = {"hate": {"filtered": False, "severity": "safe"}}
    events: list[dict[str, Any]] = [
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": filters}],
        },
        {
            "choices": [
                {
                    "content_filter_results": {},
                    "delta": {"content": "", "refusal": None, "role": "assistant"},
                    "finish_reason": None,
                    "index": 0,
                    "logprobs": None,
                }
            ],
            "created": 1733000000,
            "id": "chatcmpl-Az1",
            "model": "gpt-4o-2024-08-06",
            "object": "chat.completion.chunk",
            "system_fingerprint": "fp_04751d0b65",
        },
        {
            "choices": [
                {
                    "content_filter_results": filters,
                    "delta": {"content": "Hello"},
                    "finish_reason": None,
                    "index": 0,
                    "logprobs": None,
                }
            ],
            "created": 1733000000,
            "id": "chatcmpl-Az1",
            "model": "gpt-4o-2024-08-06",
            "object": "chat.completion.chunk",
        },
        {
            "choices": [
                {
                    "content_filter_results": {},
                    "delta": {},
                    "finish_reason": "stop",
                    "index": 0,
                    "logprobs": None,
                }
            ],
            "created": 1733000000,
            "id": "chatcmpl-Az1",
            "model": "gpt-4o-2024-08-06",
            "object": "chat.completion.chunk",
        },
    ]
    if include_usage:
        events.append(
            {
                "choices": [],
                "created": 1733000000,
                "id": "chatcmpl-Az1",
                "model": "gpt-4o-2024-08-06",
                "object": "chat.completion.chunk",
                "usage": {"completion_tokens": 1, "prompt_tokens": 9, "total_tokens": 10},
            }
        )
    lines = [b"data: " + json.dumps(event).encode() for event in events]
    return [
        *(line for pair in zip(lines, [b""] * len(lines), strict=True) for line in pair),
        b"data: [DONE]",
    ]


@pytest.mark.parametrize("client_wants_usage", [True, False])
def test_azure_stream_quirks(client_wants_usage: bool) -> None:
    translator = ADAPTOR.stream_translator(make_attempt(stream=True), client_wants_usage)
    assert isinstance(translator, StreamState)
    frames = [translator.accept(line) for line in azure_stream_lines(include_usage=True)]
    sent = [frame for frame in frames if frame is not None]

    events = [orjson.loads(frame[6:]) for frame in sent if frame != DONE_FRAME]
    # The choice-less prompt-filter event never reaches the client.
    assert all(event.get("prompt_filter_results") is None for event in events)
    assert translator.usage == {"completion_tokens": 1, "prompt_tokens": 9, "total_tokens": 10}
    assert translator.generated_text == "Hello"
    assert translator.saw_done
    assert sent[-1] == DONE_FRAME
    assert any(event.get("usage") for event in events) is client_wants_usage


# ---------------------------------------------------------------------- the fake itself


@pytest.fixture
def azure() -> Iterator[FakeAzure]:
    with FakeAzure(api_key=KEY, deployments=DEPLOYMENTS) as fake:
        yield fake


CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello there"}]}


@pytest.mark.parametrize(
    ("path", "query", "headers", "payload", "status", "code"),
    [
        ("/openai/deployments/gpt-35-turbo/chat/completions", "?api-version=2024-10-21",
         {"Authorization": f"Bearer {KEY}"}, CHAT, 401, "401"),
        ("/openai/deployments/gpt-35-turbo/chat/completions", "", {"api-key": KEY}, CHAT, 404,
         "404"),
        ("/openai/deployments/gpt-35-turbo/chat/completions", "?api-version=2099-01-01",
         {"api-key": KEY}, CHAT, 404, "404"),
        ("/openai/deployments/gpt-3.5-turbo/chat/completions", "?api-version=2024-10-21",
         {"api-key": KEY}, CHAT, 404, "DeploymentNotFound"),
        ("/v1/chat/completions", "?api-version=2024-10-21", {"api-key": KEY}, CHAT, 404, "404"),
        ("/openai/deployments/gpt-35-turbo/embeddings", "?api-version=2024-10-21",
         {"api-key": KEY}, {"input": "x"}, 400, "OperationNotSupported"),
        ("/openai/deployments/gpt-35-turbo/chat/completions", "?api-version=2024-02-01",
         {"api-key": KEY}, {**CHAT, "stream": True, "stream_options": {"include_usage": True}},
         400, None),
    ],
)  # fmt: skip
def test_the_fake_is_as_strict_as_azure(
    azure: FakeAzure,
    path: str,
    query: str,
    headers: dict[str, str],
    payload: dict[str, Any],
    status: int,
    code: str | None,
) -> None:
    response = httpx.post(f"{azure.base_url}{path}{query}", json=payload, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def channel(world: World, azure: FakeAzure) -> Channel:
    # A higher priority than the world's OpenAI channel, which serves some of these models too.
    return make_channel(
        type=ChannelType.AZURE, base_url=azure.base_url, key=KEY, models=MODELS, priority=10
    )


def text_quota(model: str, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, ChannelType.AZURE)
    completion_ratio = pricing.completion_ratio(model, ChannelType.AZURE)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def assert_billed(world: World, channel: Channel, quota: int) -> Log:
    world.refresh()
    channel.refresh_from_db()
    log = Log.objects.get()
    assert log.quota == quota == world.user.used_quota == channel.used_quota
    assert log.channel_id == channel.pk
    return log


def test_chat_goes_to_the_deployment_and_is_billed_from_azure_usage(
    world: World, channel: Channel, azure: FakeAzure
) -> None:
    raw = orjson.dumps(CHAT)
    result = world.client.request("POST", "/v1/chat/completions", body=raw)

    assert result.status == 200, result.body
    sent = azure.last_request
    assert sent.path == "/openai/deployments/gpt-35-turbo/chat/completions"
    assert sent.query == {"api-version": DEFAULT_API_VERSION}
    assert sent.headers["api-key"] == KEY
    assert "authorization" not in sent.headers
    assert sent.body == raw
    body = result.json()
    assert body["choices"][0]["message"]["content"] == azure.reply
    assert body["prompt_filter_results"]  # Azure's extras reach the client untouched
    assert world.upstream.requests == []
    log = assert_billed(world, channel, text_quota("gpt-3.5-turbo", 12, 6))
    assert (log.prompt_tokens, log.completion_tokens) == (12, 6)
    assert log.model_name == "gpt-3.5-turbo"


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_stream_through_the_relay(
    world: World, channel: Channel, azure: FakeAzure, include_usage: bool
) -> None:
    payload: dict[str, Any] = {**CHAT, "model": "gpt-4o", "stream": True}
    if include_usage:
        payload["stream_options"] = {"include_usage": True}
    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    assert azure.last_request.path == "/openai/deployments/gpt-4o/chat/completions"
    assert azure.last_request.json is not None
    assert azure.last_request.json["stream_options"] == {"include_usage": True}
    events = result.events
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert not any("prompt_filter_results" in chunk for chunk in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == azure.reply
    usage_chunks = [c for c in chunks if c.get("usage")]
    assert len(usage_chunks) == (1 if include_usage else 0)
    log = assert_billed(world, channel, text_quota("gpt-4o", 12, 6))
    assert log.is_stream


def test_an_old_api_version_streams_without_stream_options_and_counts_the_text(
    world: World, azure: FakeAzure
) -> None:
    channel = make_channel(
        type=ChannelType.AZURE,
        base_url=azure.base_url,
        key=KEY,
        models="gpt-4o",
        other="2024-02-01",  # One API's legacy place for the version
        priority=10,
    )
    result = world.client.post("/v1/chat/completions", {**CHAT, "model": "gpt-4o", "stream": True})

    assert result.status == 200, result.body
    sent = azure.last_request
    assert sent.query == {"api-version": "2024-02-01"}
    assert sent.json is not None
    assert "stream_options" not in sent.json
    assert result.events[-1] == "[DONE]"
    world.refresh()
    log = Log.objects.get()
    assert log.completion_tokens == usage.count_text(azure.reply, "gpt-4o", options.snapshot())
    quota = text_quota("gpt-4o", log.prompt_tokens, log.completion_tokens)
    assert_billed(world, channel, quota)


def test_content_filter_finish_reason_passes_through(
    world: World, channel: Channel, azure: FakeAzure
) -> None:
    azure.scenario = "output_filtered"
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 200
    choice = result.json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] is None


def test_mapped_model_uses_the_named_deployment(world: World, azure: FakeAzure) -> None:
    make_channel(
        type=ChannelType.AZURE,
        base_url=azure.base_url,
        key=KEY,
        models="gpt-4o-mini",
        model_mapping=json.dumps({"gpt-4o-mini": "my.custom-deploy"}),
        config=json.dumps({"api_version": "2025-01-01-preview"}),
        priority=10,
    )
    result = world.client.post("/v1/chat/completions", {**CHAT, "model": "gpt-4o-mini"})

    assert result.status == 200, result.body
    sent = azure.last_request
    assert sent.path == "/openai/deployments/my.custom-deploy/chat/completions"
    assert sent.query == {"api-version": "2025-01-01-preview"}
    assert sent.json is not None
    assert sent.json["model"] == "my.custom-deploy"


def test_completions_through_the_relay(world: World, channel: Channel, azure: FakeAzure) -> None:
    payload = {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}
    result = world.client.post("/v1/completions", payload)
    assert result.status == 200, result.body
    assert azure.last_request.path == "/openai/deployments/gpt-35-turbo-instruct/completions"
    assert result.json()["choices"][0]["text"] == azure.reply


def test_embeddings_through_the_relay(world: World, channel: Channel, azure: FakeAzure) -> None:
    payload = {"model": "text-embedding-3-small", "input": ["one", "two"]}
    result = world.client.post("/v1/embeddings", payload)

    assert result.status == 200, result.body
    assert azure.last_request.path == "/openai/deployments/text-embedding-3-small/embeddings"
    assert azure.last_request.body == orjson.dumps(payload)
    assert [item["index"] for item in result.json()["data"]] == [0, 1]
    assert_billed(world, channel, text_quota("text-embedding-3-small", 12, 0))


def test_image_generation_through_the_relay(
    world: World, channel: Channel, azure: FakeAzure
) -> None:
    payload = {"model": "dall-e-3", "prompt": "a red fox", "size": "1024x1024"}
    result = world.client.post("/v1/images/generations", payload)

    assert result.status == 200, result.body
    assert azure.last_request.path == "/openai/deployments/dall-e-3/images/generations"
    assert azure.last_request.headers["api-key"] == KEY
    assert result.json()["data"][0]["revised_prompt"]
    ratio = pricing.model_ratio("dall-e-3", ChannelType.AZURE)
    assert_billed(world, channel, int(ratio * 1000))


def test_speech_through_the_relay(world: World, channel: Channel, azure: FakeAzure) -> None:
    text = "Hello from the relay."
    result = world.client.post(
        "/v1/audio/speech", {"model": "tts-1", "input": text, "voice": "alloy"}
    )

    assert result.status == 200, result.body
    assert result.body == azure.speech_audio
    assert result.headers["content-type"] == "audio/mpeg"
    assert azure.last_request.path == "/openai/deployments/tts-1/audio/speech"
    ratio = pricing.model_ratio("tts-1", ChannelType.AZURE)
    assert_billed(world, channel, math.ceil(len(text) * ratio))


@pytest.mark.parametrize(
    ("path", "task"),
    [
        ("/v1/audio/transcriptions", "transcriptions"),
        ("/v1/audio/translations", "translations"),
    ],
)
def test_transcription_through_the_relay(
    world: World, channel: Channel, azure: FakeAzure, path: str, task: str
) -> None:
    request = httpx.Request(
        "POST",
        "http://client.invalid/",
        data={"model": "whisper-1"},
        files={"file": ("talk.mp3", b"ID3\x00fake-audio", "audio/mpeg")},
    )
    body, content_type = request.read(), request.headers["content-type"]
    result = world.client.request("POST", path, body=body, headers={"content-type": content_type})

    assert result.status == 200, result.body
    assert result.json() == {"text": azure.transcript}
    sent = azure.last_request
    assert sent.path == f"/openai/deployments/whisper-1/audio/{task}"
    assert sent.body == body
    assert sent.files == {"file": ("talk.mp3", b"ID3\x00fake-audio")}
    world.refresh()
    log = Log.objects.get()
    ratio = pricing.model_ratio("whisper-1", ChannelType.AZURE)
    assert log.prompt_tokens > 0
    assert_billed(world, channel, math.ceil(log.prompt_tokens * ratio))


# ---------------------------------------------------------------------- errors


def error_of(result: Any) -> dict[str, Any]:
    return result.json()["error"]


def test_prompt_filter_error_keeps_status_and_message(
    world: World, channel: Channel, azure: FakeAzure
) -> None:
    azure.scenario = "prompt_filtered"
    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status == 400
    error = error_of(result)
    assert error["code"] == "content_filter"
    assert "content management policy" in error["message"]
    assert error["type"] == "upstream_error"  # Azure sends no type
    world.refresh()
    assert world.user.used_quota == 0


def test_rate_limit_keeps_429_and_retry_after(
    world: World, channel: Channel, azure: FakeAzure
) -> None:
    azure.scenario = "error_429"
    result = world.client.post("/v1/chat/completions", {**CHAT, "stream": True})

    assert result.status == 429
    assert "exceeded token rate limit" in error_of(result)["message"]
    assert result.headers["retry-after"] == "3"


def test_wrong_key_is_a_401_with_azures_message(world: World, azure: FakeAzure) -> None:
    make_channel(
        type=ChannelType.AZURE, base_url=azure.base_url, key="wrong", models="gpt-4o", priority=10
    )
    result = world.client.post("/v1/chat/completions", {**CHAT, "model": "gpt-4o"})
    assert result.status == 401
    assert "Access denied due to invalid subscription key" in error_of(result)["message"]


def test_missing_deployment_is_a_404(world: World, azure: FakeAzure) -> None:
    make_channel(
        type=ChannelType.AZURE, base_url=azure.base_url, key=KEY, models="gpt-4-32k", priority=10
    )
    result = world.client.post("/v1/chat/completions", {**CHAT, "model": "gpt-4-32k"})
    assert result.status == 404
    assert error_of(result)["code"] == "DeploymentNotFound"


def test_moderations_are_refused_before_any_request(world: World, azure: FakeAzure) -> None:
    make_channel(
        type=ChannelType.AZURE,
        base_url=azure.base_url,
        key=KEY,
        models="omni-moderation-latest",
        priority=10,
    )
    result = world.client.post(
        "/v1/moderations", {"model": "omni-moderation-latest", "input": "hello"}
    )
    assert result.status == 400
    assert error_of(result)["code"] == "unsupported_mode"
    assert azure.requests == []


@pytest.mark.parametrize(
    ("status", "body", "message", "code"),
    [
        # The data plane's own shape: a code, a message, no type.
        (
            404,
            {"error": {"code": "DeploymentNotFound", "message": "The API deployment ..."}},
            "The API deployment ...",
            "DeploymentNotFound",
        ),
        # API Management in front of the resource (wrong key on some endpoints).
        (
            401,
            {"statusCode": 401, "message": "Unauthorized. Access token is missing, invalid."},
            "Unauthorized. Access token is missing, invalid.",
            "bad_response_status_code",
        ),
    ],
)
def test_azure_error_bodies_are_read(
    status: int, body: dict[str, Any], message: str, code: str
) -> None:
    from relay.failures import error_from_response

    error = error_from_response(status, orjson.dumps(body), httpx.Headers())
    assert (error.status, error.message, error.code) == (status, message, code)
    assert error.type == "upstream_error"
