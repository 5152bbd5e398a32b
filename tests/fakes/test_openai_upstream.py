from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import (
    HTML_502,
    MSG_NO_KEY,
    MSG_QUOTA,
    MSG_SERVER_ERROR,
    TINY_PNG,
    FakeOpenAI,
    embedding_vector,
    split_text,
)

KEY = "sk-upstream"
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        },
    }
]
EXPECTED_USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[openai.OpenAI]:
    # max_retries=0: scenario tests must see the first answer, not a retried one.
    sdk = openai.OpenAI(api_key=KEY, base_url=fake.base_url + "/v1", max_retries=0)
    yield sdk
    sdk.close()


def post(fake: FakeOpenAI, path: str, body: dict[str, Any], timeout: float = 5) -> httpx.Response:
    return httpx.post(fake.base_url + path, json=body, headers=AUTH, timeout=timeout)


def sse_events(text: str) -> list[str]:
    # Strict framing check: every event is exactly "data: <payload>\n\n".
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    assert all(event.startswith("data: ") and "\n" not in event for event in events)
    return [event.removeprefix("data: ") for event in events]


# ---------------------------------------------------------------------- lifecycle


def test_start_stop_and_base_url() -> None:
    fake = FakeOpenAI()
    assert fake.start() is fake
    assert fake.base_url == f"http://127.0.0.1:{fake.port}"
    assert httpx.get(fake.base_url + "/v1/models").status_code == 200  # no api_key: open
    base_url = fake.base_url
    fake.stop()
    fake.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(base_url + "/v1/models", timeout=1)
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.base_url


def test_unknown_scenario_is_rejected(fake: FakeOpenAI) -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        fake.scenario = "eror_500"
    with pytest.raises(ValueError, match="unknown scenario"):
        fake.fail_times(1, "nope")


def test_reset_clears_requests_and_scenario(fake: FakeOpenAI) -> None:
    fake.scenario = "error_500"
    fake.fail_times(3, "error_503")
    assert post(fake, "/v1/chat/completions", CHAT).status_code == 503
    fake.reset()
    assert fake.requests == []
    assert fake.scenario == "ok"
    assert post(fake, "/v1/chat/completions", CHAT).status_code == 200


# ---------------------------------------------------------------------- chat


def test_chat_non_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "Hello from fake upstream."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 11
    assert completion.usage.completion_tokens == 7
    assert completion.usage.total_tokens == 18

    (recorded,) = fake.requests
    assert recorded.method == "POST"
    assert recorded.path == "/v1/chat/completions"
    assert recorded.headers["authorization"] == f"Bearer {KEY}"
    assert recorded.headers["content-type"] == "application/json"
    assert recorded.json == {
        "messages": [{"role": "user", "content": "Hi"}],
        "model": "gpt-4o-mini",
    }
    assert json.loads(recorded.body) == recorded.json


def test_chat_usage_and_reply_are_settable(fake: FakeOpenAI) -> None:
    fake.reply = "Other."
    fake.prompt_tokens, fake.completion_tokens = 100, 50
    body = post(fake, "/chat/completions", {**CHAT, "n": 2}).json()  # no /v1 prefix
    assert [c["message"]["content"] for c in body["choices"]] == ["Other.", "Other."]
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == 100
    assert body["usage"]["completion_tokens"] == 50
    assert body["usage"]["total_tokens"] == 150


def test_chat_stream_without_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = list(stream)
    assert len(chunks) == 1 + 4 + 1  # role, "Hello"/" from"/" fake"/" upstream.", finish
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert pieces == ["Hello", " from", " fake", " upstream."]
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_chat_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) == 1 + 4 + 1 + 1
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert usage_chunk.usage.prompt_tokens == 11
    assert usage_chunk.usage.completion_tokens == 7
    assert usage_chunk.usage.total_tokens == 18
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == "Hello from fake upstream."


def test_chat_stream_wire_format(fake: FakeOpenAI) -> None:
    response = post(fake, "/v1/chat/completions", {**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.headers["x-request-id"].startswith("req_")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert all("usage" not in c for c in chunks)


def test_slow_stream_delivers_chunks_incrementally(fake: FakeOpenAI) -> None:
    fake.scenario = "slow_stream"
    fake.chunk_delay = 0.05
    arrivals: list[float] = []
    start = time.monotonic()
    with httpx.stream(
        "POST", fake.base_url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers=AUTH
    ) as response:
        for line in response.iter_lines():
            if line:
                arrivals.append(time.monotonic() - start)
    assert len(arrivals) == 7  # 6 chunks + [DONE]
    # Chunks are flushed one at a time, so they arrive spread over the delays.
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert all(gap >= 0.03 for gap in gaps), gaps


def test_tool_call_non_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.scenario = "tool_call"
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather?"}], tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.function.arguments == '{"location": "Paris", "unit": "celsius"}'


def test_tool_call_scenario_without_tools_is_plain_text(fake: FakeOpenAI) -> None:
    fake.scenario = "tool_call"
    body = post(fake, "/v1/chat/completions", CHAT).json()
    assert body["choices"][0]["message"]["content"] == "Hello from fake upstream."
    assert body["choices"][0]["finish_reason"] == "stop"


def test_tool_call_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.scenario = "tool_call"
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Weather?"}],
        tools=TOOLS,
        stream=True,
    )
    chunks = list(stream)
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    assert first.tool_calls is not None
    assert first.tool_calls[0].id is not None
    assert first.tool_calls[0].function is not None
    assert first.tool_calls[0].function.name == "get_weather"
    argument_pieces = []
    for chunk in chunks[1:-1]:
        calls = chunk.choices[0].delta.tool_calls
        assert calls is not None and calls[0].index == 0 and calls[0].function is not None
        argument_pieces.append(calls[0].function.arguments)
    assert len(argument_pieces) == 4
    assert "".join(argument_pieces) == '{"location": "Paris", "unit": "celsius"}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_reasoning(fake: FakeOpenAI) -> None:
    fake.scenario = "reasoning"
    message = post(fake, "/v1/chat/completions", CHAT).json()["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think about this step by step."
    assert message["content"] == "Hello from fake upstream."

    events = sse_events(post(fake, "/v1/chat/completions", {**CHAT, "stream": True}).text)
    deltas = [json.loads(e)["choices"][0]["delta"] for e in events[:-1]]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    assert reasoning == "Let me think about this step by step."
    assert content == "Hello from fake upstream."
    # Reasoning comes first, as DeepSeek streams it.
    last_reasoning = max(i for i, d in enumerate(deltas) if d.get("reasoning_content"))
    first_content = min(i for i, d in enumerate(deltas) if d.get("content"))
    assert last_reasoning < first_content


def test_no_usage(fake: FakeOpenAI) -> None:
    fake.scenario = "no_usage"
    assert "usage" not in post(fake, "/v1/chat/completions", CHAT).json()
    stream_body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(post(fake, "/v1/chat/completions", stream_body).text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in c and c["choices"] for c in chunks)
    embed = {"model": "text-embedding-3-small", "input": "x"}
    assert "usage" not in post(fake, "/v1/embeddings", embed).json()


def test_invalid_json_and_missing_model(fake: FakeOpenAI) -> None:
    bad = httpx.post(
        fake.base_url + "/v1/chat/completions",
        content=b"{not json",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["message"].startswith("We could not parse the JSON body")
    assert fake.last_request.body == b"{not json"
    assert fake.last_request.json is None

    missing = post(fake, "/v1/chat/completions", {"messages": []})
    assert missing.status_code == 400
    assert missing.json() == {
        "error": {
            "message": "you must provide a model parameter",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }


# ---------------------------------------------------------------------- legacy text


def test_completions_non_stream_and_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.choices[0].text == "Hello from fake upstream."
    assert completion.usage is not None and completion.usage.total_tokens == 18

    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say hi",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks[:-1]) == "Hello from fake upstream."
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 11


def test_edits(fake: FakeOpenAI) -> None:
    body = post(fake, "/v1/edits", {"model": "text-davinci-edit-001", "input": "a"}).json()
    assert body["object"] == "edit"
    assert body["choices"] == [{"text": "Hello from fake upstream.", "index": 0}]
    assert body["usage"] == EXPECTED_USAGE


# ---------------------------------------------------------------------- embeddings


def test_embeddings_sdk_base64(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    # The SDK asks for base64 by default and decodes it back to floats.
    assert fake.last_request.json is not None
    assert fake.last_request.json["encoding_format"] == "base64"
    assert result.object == "list"
    assert result.model == "text-embedding-3-small"
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == embedding_vector("a", 16)
    assert result.data[1].embedding == embedding_vector("b", 16)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 11
    assert result.usage.total_tokens == 11


def test_embeddings_float_and_dimensions(fake: FakeOpenAI) -> None:
    body = post(
        fake,
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": "a", "encoding_format": "float"},
    ).json()
    (item,) = body["data"]
    assert item["object"] == "embedding"
    assert item["embedding"] == embedding_vector("a", 16)
    assert abs(sum(v * v for v in item["embedding"]) - 1.0) < 1e-5
    assert body["usage"] == {"prompt_tokens": 11, "total_tokens": 11}

    tokens = post(
        fake, "/v1/embeddings", {"model": "m", "input": [1, 2, 3], "dimensions": 4}
    ).json()
    assert len(tokens["data"]) == 1  # a flat token list is one input
    assert len(tokens["data"][0]["embedding"]) == 4


# ---------------------------------------------------------------------- moderations


def test_moderations(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.moderations.create(model="omni-moderation-latest", input=["a", "b"])
    assert result.id.startswith("modr-")
    assert len(result.results) == 2
    assert result.results[0].flagged is False
    fake.moderation_flagged = True
    flagged = post(fake, "/v1/moderations", {"input": "x"}).json()
    assert flagged["results"][0]["flagged"] is True
    assert flagged["results"][0]["categories"]["violence"] is True
    assert flagged["results"][0]["categories"]["hate"] is False


# ---------------------------------------------------------------------- images


def test_images_generate_url_and_b64(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    urls = client.images.generate(model="dall-e-3", prompt="a cat", n=2)
    assert urls.data is not None and len(urls.data) == 2
    url = urls.data[0].url
    assert url is not None and url.startswith(fake.base_url + "/fake-files/")
    assert httpx.get(url).content == TINY_PNG

    b64 = client.images.generate(model="dall-e-2", prompt="a cat", response_format="b64_json")
    assert b64.data is not None and len(b64.data) == 1
    assert base64.b64decode(b64.data[0].b64_json or "") == TINY_PNG


def test_images_edit_multipart(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    result = client.images.edit(
        model="dall-e-2",
        image=("cat.png", TINY_PNG, "image/png"),
        prompt="add a hat",
        n=3,
        response_format="b64_json",
    )
    assert result.data is not None and len(result.data) == 3
    recorded = fake.last_request
    assert recorded.path == "/v1/images/edits"
    assert recorded.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert recorded.form is not None
    assert recorded.form["prompt"] == "add a hat"
    assert recorded.form["n"] == "3"
    assert recorded.files["image"] == ("cat.png", TINY_PNG)


def test_images_variation(fake: FakeOpenAI) -> None:
    # Through httpx: the SDK marks create_variation deprecated and warns.
    response = httpx.post(
        fake.base_url + "/v1/images/variations",
        headers=AUTH,
        data={"n": "2", "size": "256x256"},
        files={"image": ("cat.png", TINY_PNG, "image/png")},
    )
    assert response.status_code == 200
    assert [set(item) for item in response.json()["data"]] == [{"url"}, {"url"}]
    assert fake.last_request.path == "/v1/images/variations"
    assert fake.last_request.files == {"image": ("cat.png", TINY_PNG)}


# ---------------------------------------------------------------------- audio


def test_speech(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="Hello"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        audio = response.read()
    assert audio == fake.speech_audio
    assert audio.startswith(b"ID3")
    opus = post(
        fake,
        "/v1/audio/speech",
        {"model": "tts-1", "input": "x", "voice": "alloy", "response_format": "opus"},
    )
    assert opus.headers["content-type"] == "audio/opus"


def test_transcription_json(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    audio = io.BytesIO(b"RIFF\x00\x00\x00\x00WAVEfmt fake-audio")
    audio.name = "clip.wav"
    result = client.audio.transcriptions.create(model="whisper-1", file=audio)
    assert result.text == "Hello from fake upstream."
    recorded = fake.last_request
    assert recorded.form == {"model": "whisper-1"}
    assert recorded.files == {"file": ("clip.wav", b"RIFF\x00\x00\x00\x00WAVEfmt fake-audio")}


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [
        ("text", "Hello from fake upstream.\n"),
        ("srt", "1\n00:00:00,000 --> 00:00:02,500\nHello from fake upstream.\n\n"),
        ("vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello from fake upstream.\n\n"),
    ],
)
def test_transcription_text_formats(fake: FakeOpenAI, response_format: str, expected: str) -> None:
    response = httpx.post(
        fake.base_url + "/v1/audio/transcriptions",
        headers=AUTH,
        data={"model": "whisper-1", "response_format": response_format},
        files={"file": ("clip.mp3", b"\xff\xfb", "audio/mpeg")},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == expected


def test_transcription_sdk_text_and_verbose(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    text = client.audio.transcriptions.create(
        model="whisper-1", file=("clip.mp3", b"\xff\xfb"), response_format="text"
    )
    assert text == "Hello from fake upstream.\n"
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=("clip.mp3", b"\xff\xfb"),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.text == "Hello from fake upstream."
    assert verbose.duration == 2.5
    assert verbose.language == "english"
    assert verbose.segments is not None and verbose.segments[0].end == 2.5
    assert verbose.words is not None
    assert [w.word for w in verbose.words] == ["Hello", "from", "fake", "upstream."]
    assert fake.last_request.form is not None
    assert fake.last_request.form["timestamp_granularities[]"] == ["word", "segment"]


def test_translation(fake: FakeOpenAI) -> None:
    response = httpx.post(
        fake.base_url + "/v1/audio/translations",
        headers=AUTH,
        data={"model": "whisper-1", "response_format": "verbose_json"},
        files={"file": ("clip.mp3", b"\xff\xfb", "audio/mpeg")},
    )
    assert response.headers["content-type"] == "application/json"
    assert response.json()["task"] == "translate"


# ---------------------------------------------------------------------- models, billing, 404


def test_models(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.models = ["gpt-4o-mini", "text-embedding-3-small"]
    assert [m.id for m in client.models.list()] == ["gpt-4o-mini", "text-embedding-3-small"]
    assert client.models.retrieve("gpt-4o-mini").owned_by == "openai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-9")


def test_billing(fake: FakeOpenAI) -> None:
    fake.hard_limit_usd = 42.5
    fake.total_usage = 1234.5
    subscription = httpx.get(fake.base_url + "/v1/dashboard/billing/subscription", headers=AUTH)
    assert subscription.json() == {
        "object": "billing_subscription",
        "has_payment_method": True,
        "soft_limit_usd": 100.0,
        "hard_limit_usd": 42.5,
        "system_hard_limit_usd": 120.0,
        "access_until": 0,
    }
    usage = httpx.get(
        fake.base_url + "/dashboard/billing/usage",
        params={"start_date": "2024-01-01", "end_date": "2024-02-01"},
        headers=AUTH,
    )
    assert usage.json() == {"object": "list", "daily_costs": [], "total_usage": 1234.5}
    assert fake.last_request.query == {"start_date": "2024-01-01", "end_date": "2024-02-01"}


def test_unknown_route_is_openai_404(fake: FakeOpenAI) -> None:
    response = post(fake, "/v1/nope", {})
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/nope)",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    assert httpx.get(fake.base_url + "/v1/chat/completions", headers=AUTH).status_code == 404


# ---------------------------------------------------------------------- auth


def test_auth_wrong_and_missing_key(fake: FakeOpenAI) -> None:
    wrong = httpx.post(
        fake.base_url + "/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": "Bearer sk-wrong-0123456789abcd"},
    )
    assert wrong.status_code == 401
    assert wrong.headers["content-type"] == "application/json; charset=utf-8"
    assert wrong.json() == {
        "error": {
            "message": "Incorrect API key provided: sk-wrong***********abcd. You can find your "
            "API key at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    missing = httpx.post(fake.base_url + "/v1/chat/completions", json=CHAT)
    assert missing.status_code == 401
    assert missing.json()["error"] == {
        "message": MSG_NO_KEY,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    assert len(fake.requests) == 2  # rejected requests are still recorded


def test_sdk_maps_401(fake: FakeOpenAI) -> None:
    sdk = openai.OpenAI(api_key="sk-bad", base_url=fake.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as excinfo:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert excinfo.value.code == "invalid_api_key"


# ---------------------------------------------------------------------- error scenarios


@pytest.mark.parametrize(
    ("scenario", "status", "error"),
    [
        (
            "error_400",
            400,
            {
                "message": "This model's maximum context length is 128000 tokens. However, "
                "your messages resulted in 130000 tokens. Please reduce the length of the "
                "messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            },
        ),
        (
            "error_401",
            401,
            {
                "message": "Incorrect API key provided: sk-upstream. You can find your API "
                "key at https://platform.openai.com/account/api-keys.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            },
        ),
        (
            "error_403",
            403,
            {
                "message": "Country, region, or territory not supported",
                "type": "request_forbidden",
                "param": None,
                "code": "unsupported_country_region_territory",
            },
        ),
        (
            "error_404",
            404,
            {
                "message": "The model `gpt-4o-mini` does not exist or you do not have access "
                "to it.",
                "type": "invalid_request_error",
                "param": None,
                "code": "model_not_found",
            },
        ),
        (
            "insufficient_quota",
            429,
            {
                "message": MSG_QUOTA,
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            },
        ),
        (
            "error_500",
            500,
            {"message": MSG_SERVER_ERROR, "type": "server_error", "param": None, "code": None},
        ),
        (
            "error_503",
            503,
            {
                "message": "The engine is currently overloaded, please try again later.",
                "type": "server_error",
                "param": None,
                "code": None,
            },
        ),
    ],
)
def test_error_scenarios(
    fake: FakeOpenAI, scenario: str, status: int, error: dict[str, Any]
) -> None:
    fake.scenario = scenario
    response = post(fake, "/v1/chat/completions", CHAT)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"error": error}


def test_error_429_rate_limit(fake: FakeOpenAI) -> None:
    fake.scenario = "error_429"
    fake.retry_after = 7
    response = post(fake, "/v1/chat/completions", CHAT)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.headers["retry-after-ms"] == "7000"
    assert response.headers["x-ratelimit-limit-requests"] == "3"
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-reset-requests"] == "7s"
    assert response.json() == {
        "error": {
            "message": "Rate limit reached for gpt-4o-mini in organization org-fake on requests "
            "per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 7s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "type": "requests",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


def test_error_502_html(fake: FakeOpenAI) -> None:
    fake.scenario = "error_502_html"
    response = post(fake, "/v1/chat/completions", CHAT)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.text == HTML_502


def test_error_scenarios_apply_to_every_route(fake: FakeOpenAI) -> None:
    fake.scenario = "error_500"
    assert httpx.get(fake.base_url + "/v1/models", headers=AUTH).status_code == 500
    embed = {"model": "text-embedding-3-small", "input": "x"}
    assert post(fake, "/v1/embeddings", embed).status_code == 500


def test_fail_times_then_revert(fake: FakeOpenAI) -> None:
    fake.fail_times(2, "error_500")
    fake.fail_times(1, "error_429")
    statuses = [post(fake, "/v1/chat/completions", CHAT).status_code for _ in range(4)]
    assert statuses == [500, 500, 429, 200]
    fake.scenario = "error_503"
    fake.fail_times(1, "ok")
    statuses = [post(fake, "/v1/chat/completions", CHAT).status_code for _ in range(2)]
    assert statuses == [200, 503]


def test_sdk_maps_rate_limit(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.scenario = "error_429"
    with pytest.raises(openai.RateLimitError) as excinfo:
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert excinfo.value.code == "rate_limit_exceeded"


# ---------------------------------------------------------------------- connection faults


def test_reset_closes_connection_without_response(fake: FakeOpenAI) -> None:
    fake.scenario = "reset"
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        post(fake, "/v1/chat/completions", CHAT)
    assert len(fake.requests) == 1  # recorded before the connection was dropped
    fake.scenario = "ok"
    assert post(fake, "/v1/chat/completions", CHAT).status_code == 200


def test_reset_through_sdk(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.scenario = "reset"
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[])


def test_drop_mid_stream(fake: FakeOpenAI) -> None:
    fake.scenario = "drop_mid_stream"
    received: list[str] = []
    with (
        pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
        httpx.stream(
            "POST",
            fake.base_url + "/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers=AUTH,
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                received.append(line)
    contents = [json.loads(line[6:])["choices"][0]["delta"].get("content") for line in received]
    assert contents == ["", "Hello", " from"]


def test_error_mid_stream(fake: FakeOpenAI, client: openai.OpenAI) -> None:
    fake.scenario = "error_mid_stream"
    events = sse_events(post(fake, "/v1/chat/completions", {**CHAT, "stream": True}).text)
    assert len(events) == 4
    assert json.loads(events[-1]) == {
        "error": {"message": MSG_SERVER_ERROR, "type": "server_error", "param": None, "code": None}
    }
    assert "[DONE]" not in events

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=[], stream=True)
    with pytest.raises(openai.APIError, match="Sorry about that"):
        list(stream)


def test_no_done(fake: FakeOpenAI) -> None:
    fake.scenario = "no_done"
    stream_body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    events = sse_events(post(fake, "/v1/chat/completions", stream_body).text)
    assert "[DONE]" not in events
    last = json.loads(events[-1])
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 18


def test_timeout_hangs_and_stop_is_fast() -> None:
    fake = FakeOpenAI().start()
    fake.scenario = "timeout"
    fake.hang_seconds = 30
    with pytest.raises(httpx.ReadTimeout):
        post(fake, "/v1/chat/completions", CHAT, timeout=0.2)

    # A client still waiting when the fake stops gets a dropped connection, not a 30 s wait.
    errors: list[BaseException] = []

    def waiting_client() -> None:
        try:
            post(fake, "/v1/chat/completions", CHAT, timeout=20)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiting_client)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    fake.stop()
    thread.join(5)
    assert time.monotonic() - started < 2
    assert len(errors) == 1


def test_timeout_answers_after_hang(fake: FakeOpenAI) -> None:
    fake.scenario = "timeout"
    fake.hang_seconds = 0.1
    started = time.monotonic()
    response = post(fake, "/v1/chat/completions", CHAT)
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.1


# ---------------------------------------------------------------------- concurrency, helpers


def test_concurrent_requests_are_all_recorded(fake: FakeOpenAI) -> None:
    def worker(i: int) -> None:
        for _ in range(5):
            post(fake, "/v1/embeddings", {"model": "m", "input": f"t{i}"})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        _ = [r.path for r in fake.requests]  # reading while the server appends
        time.sleep(0.001)  # don't starve the client threads of the GIL
    assert len(fake.requests) == 40


def test_split_text_round_trips() -> None:
    assert split_text("Hello from fake upstream.") == ["Hello", " from", " fake", " upstream."]
    for text in ["", " lead", "trail ", "a  b\nc"]:
        assert "".join(split_text(text)) == text
