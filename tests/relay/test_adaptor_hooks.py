"""The three ways an adaptor can bend the relay's usual exchange: a JSON answer to a stream
request, a binary stream read as raw bytes, and a transport of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from billing.models import Log
from relay import adaptors
from relay.adaptors.base import Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.openai import OpenAIAdaptor
from relay.streaming import DONE_FRAME, StreamState, completion_frames
from tests.factories import make_channel
from tests.relay.conftest import World

pytestmark = pytest.mark.django_db

TEST_TYPE = 990  # a channel type number no real family uses
STREAM = {
    "model": "hook-model",
    "messages": [{"role": "user", "content": "Hi"}],
    "stream": True,
}


def test_completion_frames_carry_the_whole_answer() -> None:
    completion = {
        "id": "c1",
        "created": 5,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    frames = completion_frames(completion, client_wants_usage=True)
    events = [orjson.loads(f[6:]) for f in frames.split(b"\n\n") if f and f != DONE_FRAME[:-2]]
    assert events[0]["choices"][0]["delta"]["content"] == "Hello"
    assert events[0]["choices"][0]["delta"]["tool_calls"][0]["index"] == 0
    assert events[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert events[2]["usage"]["total_tokens"] == 3
    assert frames.endswith(DONE_FRAME)
    assert b'"usage"' not in completion_frames(completion, client_wants_usage=False)


class NonStreamingUpstream(OpenAIAdaptor):
    """An upstream that cannot stream: the adaptor always asks for a whole answer."""

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        body.set("stream", False)
        body.payload.pop("stream_options", None)
        call = super().build_request(attempt, body)
        call.headers["Accept"] = "application/json"
        return call


class RawBytesTranslator(StreamState):
    def __init__(self) -> None:
        super().__init__(client_wants_usage=False)
        self.raw = b""

    def accept_bytes(self, chunk: bytes) -> bytes | None:
        self.raw += chunk
        frames = b""
        while b"\n\n" in self.raw:
            event, self.raw = self.raw.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                frame = self.accept(line.rstrip(b"\r"))
                if frame:
                    frames += frame
        return frames or None


class RawBytesAdaptor(OpenAIAdaptor):
    translators: list[RawBytesTranslator] = []

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        translator = RawBytesTranslator()
        self.translators.append(translator)
        return translator


class OwnTransportAdaptor(OpenAIAdaptor):
    """Produces the upstream's answer itself, as a WebSocket adaptor would."""

    async def send(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        async def body() -> AsyncIterator[bytes]:
            for piece in ("Own ", "transport"):
                chunk = {"id": "x", "choices": [{"index": 0, "delta": {"content": piece}}]}
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
            yield b"data: " + orjson.dumps({"id": "x", "choices": [], "usage": usage}) + b"\n\n"
            yield b"data: [DONE]\n\n"

        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


@pytest.fixture
def hook_channel(world: World, monkeypatch: pytest.MonkeyPatch):
    def install(adaptor: OpenAIAdaptor) -> None:
        monkeypatch.setitem(adaptors.ADAPTORS, TEST_TYPE, adaptor)

    make_channel(type=TEST_TYPE, base_url=world.upstream.base_url, models="hook-model")
    return install


def test_json_answer_to_a_stream_request_becomes_chunks(world: World, hook_channel) -> None:
    hook_channel(NonStreamingUpstream())

    result = world.client.post("/v1/chat/completions", STREAM)

    assert result.status == 200
    assert result.headers["content-type"] == "text/event-stream"
    assert world.upstream.last_request.json["stream"] is False
    events = result.events
    assert events[0]["choices"][0]["delta"]["content"] == world.upstream.reply
    assert events[-1] == "[DONE]"
    world.refresh()
    assert Log.objects.get().completion_tokens == world.upstream.completion_tokens


def test_binary_translators_get_the_raw_body(world: World, hook_channel) -> None:
    adaptor = RawBytesAdaptor()
    hook_channel(adaptor)

    result = world.client.post("/v1/chat/completions", STREAM)

    text = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in result.events
        if e != "[DONE]" and e["choices"]
    )
    assert text == world.upstream.reply
    assert adaptor.translators and adaptor.translators[-1].raw == b""


def test_an_adaptor_may_bring_its_own_transport(world: World, hook_channel) -> None:
    hook_channel(OwnTransportAdaptor())
    requests_before = len(world.upstream.requests)

    result = world.client.post("/v1/chat/completions", STREAM)

    text = "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in result.events
        if e != "[DONE]" and e["choices"]
    )
    assert text == "Own transport"
    assert len(world.upstream.requests) == requests_before
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (4, 2)
