"""Vertex AI (Gemini), Ollama and Cohere channels through a real Daphne, driven by the
official `openai` SDK, against fakes of each (Vertex's with its fake Google token endpoint).

One Daphne and one fake of each family serve the module; each test has its own user, key
and channel (which also serves a probe model, so the test starts once the server's routing
table has it). Billing is checked on the rows the server's write-back thread updates.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from billing import pricing
from billing.models import ApiKey
from relay.catalog import ChannelType
from tests.factories import make_channel, make_user
from tests.fakes.cohere_upstream import FakeCohere
from tests.fakes.gemini_upstream import gemini_vector
from tests.fakes.ollama_upstream import FakeOllama
from tests.fakes.vertex_upstream import FakeVertex, service_account_key
from tests.integration.relay_setup import (
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

GEMINI = "gemini-1.5-flash-002"
VERTEX_EMBEDDING = "text-embedding-005"
LLAMA = "llama3:latest"
OLLAMA_EMBEDDING = "nomic-embed-text:latest"
COMMAND = "command-r"
REGION = "us-central1"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


@pytest.fixture(scope="module")
def vertex() -> Iterator[FakeVertex]:
    with FakeVertex(project_id="e2e-project", region=REGION) as fake:
        yield fake


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
def cohere() -> Iterator[FakeCohere]:
    with FakeCohere(api_key="co-e2e") as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("vertex-ollama-cohere-e2e"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(transactional_db: None, server: DaphneServer) -> WorldFactory:
    def build(channel_type: int, models: str, **channel: Any) -> World:
        probe = f"e2e-probe-{secrets.token_hex(3)}"
        user = make_user(quota=10_000_000)
        key = ApiKey.objects.create(
            user=user, key=secrets.token_hex(24), name="e2e key", remain_quota=5_000_000
        )
        row = make_channel(type=channel_type, models=f"{models},{probe}", **channel)
        world = World(user, key, row, 10_000_000, 5_000_000, probe)
        wait_for_routing(server.base_url, world)
        return world

    return build


def sdk(server: DaphneServer, world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=world.api_key, max_retries=0)


def quota(model: str, channel_type: int, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, channel_type) * pricing.group_ratio("default")
    return pricing.text_quota(
        prompt, completion, ratio, pricing.completion_ratio(model, channel_type)
    )


def request_id_of(headers: Any) -> str:
    request_id = headers["x-oneapi-request-id"]
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def chat_and_stream(client: openai.OpenAI, model: str) -> tuple[Any, list[Any], str, str]:
    """(completion, stream chunks, request id of each) for one chat and one stream."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    streamed = client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    stream_id = request_id_of(streamed.headers)
    return raw.parse(), list(streamed.parse()), request_id_of(raw.headers), stream_id


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# ---------------------------------------------------------------------- Vertex AI


@pytest.fixture
def vertex_world(make_world: WorldFactory, vertex: FakeVertex) -> World:
    world = make_world(
        ChannelType.VERTEX_AI,
        f"{GEMINI},{VERTEX_EMBEDDING}",
        base_url=vertex.base_url,
        # A key id of its own: no token the server cached for an earlier test matches.
        key=json.dumps(vertex.service_account(private_key_id=secrets.token_hex(20))),
        config=json.dumps({"region": REGION}),
    )
    vertex.reset()
    return world


def test_vertex_gemini_chat_and_stream(
    server: DaphneServer, vertex_world: World, vertex: FakeVertex
) -> None:
    completion, chunks, chat_id, stream_id = chat_and_stream(sdk(server, vertex_world), GEMINI)

    assert completion.model == GEMINI
    assert completion.choices[0].message.content == vertex.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    assert streamed_text(chunks) == vertex.reply
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 18
    # One token exchange served both requests, each sent with it to the regional path.
    assert vertex.token_requests == 1
    (token,) = vertex.issued_tokens
    paths = [r.path for r in vertex.model_requests]
    assert paths == [
        f"/v1/projects/e2e-project/locations/{REGION}/publishers/google/models/{GEMINI}:{action}"
        for action in ("generateContent", "streamGenerateContent")
    ]
    assert {r.headers["authorization"] for r in vertex.model_requests} == {f"Bearer {token}"}

    expected = quota(GEMINI, ChannelType.VERTEX_AI, 11, 7)
    assert_billed(vertex_world, {chat_id: expected, stream_id: expected})
    assert [log.is_stream for log in vertex_world.logs()] == [False, True]


def test_vertex_embeddings_in_the_sdks_base64(
    server: DaphneServer, vertex_world: World, vertex: FakeVertex
) -> None:
    raw = sdk(server, vertex_world).embeddings.with_raw_response.create(
        model=VERTEX_EMBEDDING, input=["hello world"]
    )
    result = raw.parse()

    assert result.data[0].embedding == pytest.approx(gemini_vector("hello world", 8))
    assert result.usage.prompt_tokens == 2
    ratio = pricing.model_ratio(VERTEX_EMBEDDING, ChannelType.VERTEX_AI)
    expected = pricing.text_quota(2, 0, ratio * pricing.group_ratio("default"), 1.0)
    assert_billed(vertex_world, {request_id_of(raw.headers): expected})


def test_vertex_refused_key_is_a_401(
    server: DaphneServer, make_world: WorldFactory, vertex: FakeVertex
) -> None:
    world = make_world(
        ChannelType.VERTEX_AI,
        GEMINI,
        base_url=vertex.base_url,
        key=json.dumps(vertex.service_account(private_key=service_account_key(1))),
        config=json.dumps({"region": REGION}),
    )
    vertex.reset()

    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(server, world).chat.completions.create(model=GEMINI, messages=MESSAGES)

    assert "Invalid JWT Signature" in str(caught.value)
    assert vertex.model_requests == []
    assert world.logs() == []


# ---------------------------------------------------------------------- Ollama


@pytest.fixture
def ollama_world(make_world: WorldFactory, ollama: FakeOllama) -> World:
    world = make_world(
        ChannelType.OLLAMA, f"{LLAMA},{OLLAMA_EMBEDDING}", base_url=ollama.base_url, key=""
    )
    ollama.reset()
    return world


def test_ollama_chat_stream_and_embeddings(
    server: DaphneServer, ollama_world: World, ollama: FakeOllama
) -> None:
    client = sdk(server, ollama_world)
    completion, chunks, chat_id, stream_id = chat_and_stream(client, LLAMA)

    assert completion.choices[0].message.content == ollama.reply
    assert completion.usage is not None and completion.usage.total_tokens == 22
    assert streamed_text(chunks) == ollama.reply
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 13
    assert [r.json["stream"] for r in ollama.requests] == [False, True]

    raw = client.embeddings.with_raw_response.create(model=OLLAMA_EMBEDDING, input="a b c")
    embedded = raw.parse()
    assert embedded.data[0].embedding == pytest.approx(gemini_vector("a b c", 8))
    assert ollama.last_request.path == "/api/embed"

    chat_quota = quota(LLAMA, ChannelType.OLLAMA, 13, 9)
    embed_quota = quota(OLLAMA_EMBEDDING, ChannelType.OLLAMA, 3, 0)
    assert_billed(
        ollama_world,
        {chat_id: chat_quota, stream_id: chat_quota, request_id_of(raw.headers): embed_quota},
    )


def test_ollama_streamed_tool_call(
    server: DaphneServer, ollama_world: World, ollama: FakeOllama
) -> None:
    stream = sdk(server, ollama_world).chat.completions.create(
        model=LLAMA, messages=MESSAGES, tools=[WEATHER_TOOL], stream=True
    )
    chunks = list(stream)

    calls = [c for chunk in chunks for c in chunk.choices[0].delta.tool_calls or ()]
    assert len(calls) == 1 and calls[0].function is not None
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments or "") == ollama.function_args
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# ---------------------------------------------------------------------- Cohere


@pytest.fixture
def cohere_world(make_world: WorldFactory, cohere: FakeCohere) -> World:
    world = make_world(
        ChannelType.COHERE,
        f"{COMMAND},{COMMAND}-internet",
        base_url=cohere.base_url,
        key="co-e2e",
    )
    cohere.reset()
    return world


def test_cohere_chat_and_stream(
    server: DaphneServer, cohere_world: World, cohere: FakeCohere
) -> None:
    completion, chunks, chat_id, stream_id = chat_and_stream(sdk(server, cohere_world), COMMAND)

    assert completion.choices[0].message.content == cohere.reply
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (15, 6)
    assert streamed_text(chunks) == cohere.reply
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 21
    assert [r.json["stream"] for r in cohere.requests] == [False, True]
    assert {r.headers["authorization"] for r in cohere.requests} == {"Bearer co-e2e"}

    expected = quota(COMMAND, ChannelType.COHERE, 15, 6)
    assert_billed(cohere_world, {chat_id: expected, stream_id: expected})


def test_cohere_tool_round_trip_with_web_search(
    server: DaphneServer, cohere_world: World, cohere: FakeCohere
) -> None:
    client = sdk(server, cohere_world)
    model = f"{COMMAND}-internet"
    first = client.chat.completions.create(model=model, messages=MESSAGES, tools=[WEATHER_TOOL])
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]

    second = client.chat.completions.create(
        model=model,
        tools=[WEATHER_TOOL],
        messages=[
            *MESSAGES,
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 18}'},
        ],
    )

    assert second.choices[0].message.content == cohere.reply
    sent = cohere.last_request.json
    assert sent["connectors"] == [{"id": "web-search"}] and sent["model"] == COMMAND
    assert sent["tool_results"][0]["outputs"] == [{"temp": 18}]
