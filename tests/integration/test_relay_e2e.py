"""The relay through a real Daphne, driven by the official `openai` SDK, against FakeOpenAI.

One Daphne serves the whole module. Every test creates its own user, key and channel (the
database is emptied after each test); the channel also serves a model unique to the test,
and the test starts once the server lists it, i.e. once its routing table has this channel.
Billing is checked on the rows the server's write-back thread updates. Logs are always
looked up by the test's own user: emptying the database also empties `journal_marks`, so the
long-running server re-applies the journal lines of earlier tests (for users long gone).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from relay.tokens import cl100k_base
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI, embedding_vector
from tests.integration.relay_setup import (
    CHAT_MESSAGES,
    CHAT_MODEL,
    CHAT_QUOTA,
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    make_world,
    start_daphne,
    text_quota,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MODELS = (
    "gpt-3.5-turbo,gpt-4o-mini,gpt-3.5-turbo-instruct,text-embedding-3-small,text-moderation-stable"
)
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("e2e-daphne"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


@pytest.fixture
def world(transactional_db: None, upstream: FakeOpenAI, server: DaphneServer) -> World:
    upstream.reset()
    world = make_world(upstream, models=MODELS)
    wait_for_routing(server.base_url, world)
    upstream.reset()
    return world


@pytest.fixture
def client(server: DaphneServer, world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=world.api_key, max_retries=0)


def request_id_of(headers: Any) -> str:
    request_id = headers["x-oneapi-request-id"]
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def cl100k_tokens(text: str) -> int:
    return len(cl100k_base().encode(text))


# --------------------------------------------------------------------------- chat


def test_chat_completion_through_sdk(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=CHAT_MESSAGES)
    completion = raw.parse()

    request_id = request_id_of(raw.headers)
    assert completion.object == "chat.completion"
    assert completion.model == CHAT_MODEL
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == upstream.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 11
    assert completion.usage.completion_tokens == 7
    assert completion.usage.total_tokens == 18
    # The channel's key replaced the client's, and the body went upstream unchanged.
    sent = upstream.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-upstream"
    assert sent.json == {"model": CHAT_MODEL, "messages": CHAT_MESSAGES}

    assert text_quota(CHAT_MODEL, 11, 7) == CHAT_QUOTA
    assert_billed(world, {request_id: CHAT_QUOTA})
    (log,) = world.logs()
    assert log.model_name == CHAT_MODEL
    assert log.token_name == "e2e key"
    assert log.username == world.user.username
    assert log.channel_id == world.channel.pk
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert log.is_stream is False


def test_chat_stream_has_no_usage_chunk_unless_asked(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=CHAT_MESSAGES, stream=True
    )
    request_id = request_id_of(raw.headers)
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())

    assert len(chunks) >= 3
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert all(len(chunk.choices) == 1 for chunk in chunks)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == upstream.reply
    assert chunks[-1].choices[0].finish_reason == "stop"
    # The gateway asked upstream for usage all the same, and billed from it.
    assert upstream.last_request.json is not None
    assert upstream.last_request.json["stream_options"] == {"include_usage": True}

    assert_billed(world, {request_id: CHAT_QUOTA})
    (log,) = world.logs()
    assert log.is_stream is True
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)


def test_chat_stream_with_include_usage_has_exactly_one_usage_chunk(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL,
        messages=CHAT_MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    request_id = request_id_of(raw.headers)
    chunks = list(raw.parse())

    with_usage = [chunk for chunk in chunks if chunk.usage is not None]
    assert len(with_usage) == 1
    usage_chunk = with_usage[0]
    assert usage_chunk is chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (11, 7)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == upstream.reply

    assert_billed(world, {request_id: CHAT_QUOTA})


def test_tool_call_comes_back(client: openai.OpenAI, world: World, upstream: FakeOpenAI) -> None:
    upstream.scenario = "tool_call"

    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    completion = raw.parse()

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris", "unit": "celsius"}
    assert upstream.last_request.json is not None
    assert upstream.last_request.json["tools"] == [WEATHER_TOOL]

    assert_billed(world, {request_id_of(raw.headers): CHAT_QUOTA})


def test_streamed_tool_call_arguments_reassemble(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI
) -> None:
    upstream.scenario = "tool_call"

    raw = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    chunks = list(raw.parse())

    names = []
    arguments = ""
    for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or ():
            if call.function is not None:
                names.append(call.function.name)
                arguments += call.function.arguments or ""
    assert [name for name in names if name] == ["get_weather"]
    assert arguments == upstream.tool_arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    assert_billed(world, {request_id_of(raw.headers): CHAT_QUOTA})


# --------------------------------------------------------------------------- other text modes


def test_legacy_completion(client: openai.OpenAI, world: World, upstream: FakeOpenAI) -> None:
    model = "gpt-3.5-turbo-instruct"

    raw = client.completions.with_raw_response.create(model=model, prompt="Say hello")
    completion = raw.parse()

    assert completion.object == "text_completion"
    assert completion.choices[0].text == upstream.reply
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    assert upstream.last_request.path == "/v1/completions"

    # ratio 0.75, completion ratio 4/3: ceil((11 + 7 × 4/3) × 0.75) = 16
    assert text_quota(model, 11, 7) == 16
    assert_billed(world, {request_id_of(raw.headers): 16})
    (log,) = world.logs()
    assert log.model_name == model


def test_embeddings_single_and_list_input(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI
) -> None:
    model = "text-embedding-3-small"

    single = client.embeddings.with_raw_response.create(model=model, input="hello world")
    many = client.embeddings.with_raw_response.create(model=model, input=["first", "second"])

    one = single.parse()
    assert len(one.data) == 1
    assert one.data[0].index == 0
    assert one.data[0].embedding == pytest.approx(embedding_vector("hello world", 16))
    two = many.parse()
    assert [item.index for item in two.data] == [0, 1]
    assert two.data[0].embedding == pytest.approx(embedding_vector("first", 16))
    assert two.data[1].embedding == pytest.approx(embedding_vector("second", 16))
    assert upstream.last_request.json is not None
    assert upstream.last_request.json["input"] == ["first", "second"]
    assert two.usage.prompt_tokens == 11

    # The upstream says 11 prompt tokens: ceil(11 × 0.01) = 1 each.
    assert text_quota(model, 11, 0) == 1
    assert_billed(world, {request_id_of(single.headers): 1, request_id_of(many.headers): 1})


def test_moderation(client: openai.OpenAI, world: World, upstream: FakeOpenAI) -> None:
    text = "I will hurt you"

    raw = client.moderations.with_raw_response.create(input=text)
    moderation = raw.parse()

    assert moderation.id.startswith("modr-")
    assert len(moderation.results) == 1
    assert moderation.results[0].flagged is False
    assert upstream.last_request.path == "/v1/moderations"

    # No model given: One API's default, priced at 0.1 on the counted input (no usage back).
    prompt = cl100k_tokens(text)
    quota = text_quota("text-moderation-stable", prompt, 0)
    assert_billed(world, {request_id_of(raw.headers): quota})
    (log,) = world.logs()
    assert log.model_name == "text-moderation-stable"
    assert (log.prompt_tokens, log.completion_tokens) == (prompt, 0)
    assert log.quota == 1


# --------------------------------------------------------------------------- models


def test_models_list_shows_only_the_groups_channels_and_retrieve(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI, server: DaphneServer
) -> None:
    # A channel of another group: its models must not be listed for a default-group user.
    make_channel(base_url=upstream.base_url, models="gpt-4,o1-mini", group="vip")
    other = make_world(upstream, models="gpt-4o")  # and one more default-group channel
    wait_for_routing(server.base_url, other)

    listed = client.models.list()

    ids = [model.id for model in listed.data]
    expected = sorted([*MODELS.split(","), "gpt-4o", world.probe_model, other.probe_model])
    assert ids == expected
    by_id = {model.id: model for model in listed.data}
    assert by_id["gpt-3.5-turbo"].owned_by == "openai"
    assert by_id[world.probe_model].owned_by == "custom"
    assert all(model.object == "model" for model in listed.data)

    model = client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini"
    assert model.owned_by == "openai"
    assert model.created == 1626777600
    # Not filtered by availability: One API looks names up in its static catalog.
    assert client.models.retrieve("gpt-4").id == "gpt-4"

    unknown = httpx.get(
        f"{server.base_url}/v1/models/no-such-model", headers=world.auth_headers, timeout=10
    )
    assert unknown.status_code == 200
    assert unknown.json() == {
        "error": {
            "message": "The model 'no-such-model' does not exist",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    # Listing is free.
    assert world.logs() == []


# --------------------------------------------------------------------------- base URL


def test_base_url_without_v1(server: DaphneServer, world: World, upstream: FakeOpenAI) -> None:
    response = httpx.post(
        f"{server.base_url}/chat/completions",
        json={"model": CHAT_MODEL, "messages": CHAT_MESSAGES},
        headers=world.auth_headers,
        timeout=30,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == upstream.reply
    assert upstream.last_request.path == "/v1/chat/completions"
    assert_billed(world, {request_id_of(response.headers): CHAT_QUOTA})


def test_sdk_with_base_url_without_v1(server: DaphneServer, world: World) -> None:
    bare = openai.OpenAI(base_url=server.base_url, api_key=world.api_key, max_retries=0)

    raw = bare.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=CHAT_MESSAGES)

    assert raw.parse().choices[0].message.content
    assert_billed(world, {request_id_of(raw.headers): CHAT_QUOTA})


# --------------------------------------------------------------------------- errors


def test_wrong_key_is_an_authentication_error(
    server: DaphneServer, world: World, upstream: FakeOpenAI
) -> None:
    wrong = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="sk-" + "z" * 48, max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        wrong.chat.completions.create(model=CHAT_MODEL, messages=CHAT_MESSAGES)

    error = caught.value
    assert error.status_code == 401
    assert "无效的令牌" in error.message
    assert "(request id:" in error.message
    request_id = request_id_of(error.response.headers)
    assert error.body == {
        "message": f"无效的令牌 (request id: {request_id})",
        "type": "one_api_error",
        "param": "",
        "code": "",
    }
    assert upstream.requests == []


def test_model_without_channel_is_503(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="gpt-4-32k", messages=CHAT_MESSAGES)

    error = caught.value
    assert error.status_code == 503
    assert isinstance(error.body, dict)
    request_id = request_id_of(error.response.headers)
    assert error.body["message"] == (
        f"当前分组 default 下对于模型 gpt-4-32k 无可用渠道 (request id: {request_id})"
    )
    assert error.body["type"] == "one_api_error"
    assert upstream.requests == []


def test_upstream_429_is_a_rate_limit_error_and_costs_nothing(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI
) -> None:
    upstream.fail_times(1, "error_429")

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=CHAT_MODEL, messages=CHAT_MESSAGES)

    error = caught.value
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    message = error.body["message"]
    assert message.startswith("当前分组上游负载已饱和，请稍后再试")
    assert "Rate limit reached for gpt-3.5-turbo" in message
    assert message.endswith(f"(request id: {request_id_of(error.response.headers)})")
    assert error.response.headers["retry-after"] == "1"
    assert len(upstream.requests) == 1  # RetryTimes is 0 by default

    # A later request is billed alone: its log is applied after anything the 429 could
    # have journaled, so only one log means the 429 cost nothing.
    raw = client.chat.completions.with_raw_response.create(model=CHAT_MODEL, messages=CHAT_MESSAGES)
    assert_billed(world, {request_id_of(raw.headers): CHAT_QUOTA})


def test_unknown_path_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.get("/nothing", cast_to=object)

    assert caught.value.status_code == 404
    assert caught.value.body == {
        "message": "Invalid URL (GET /v1/nothing)",
        "type": "invalid_request_error",
        "param": "",
        "code": "",
    }


def test_files_api_is_not_implemented(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.list()

    error = caught.value
    assert error.status_code == 501
    assert error.code == "api_not_implemented"
    # One API's RelayNotImplemented body, verbatim (no request id in the message).
    assert error.body == {
        "message": "API not implemented",
        "type": "one_api_error",
        "param": "",
        "code": "api_not_implemented",
    }
    assert upstream.requests == []


# --------------------------------------------------------------------------- billing


def test_mixed_requests_are_billed_once_each(
    client: openai.OpenAI, world: World, upstream: FakeOpenAI
) -> None:
    expected: dict[str, int] = {}

    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model=CHAT_MODEL, messages=CHAT_MESSAGES
        )
        expected[request_id_of(raw.headers)] = CHAT_QUOTA
    stream = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=CHAT_MESSAGES, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse()) == upstream.reply
    expected[request_id_of(stream.headers)] = CHAT_QUOTA
    completion = client.completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hello"
    )
    expected[request_id_of(completion.headers)] = 16
    embedding = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="hello"
    )
    expected[request_id_of(embedding.headers)] = 1
    upstream.fail_times(1, "error_500")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=CHAT_MODEL, messages=CHAT_MESSAGES)
    last = client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=CHAT_MESSAGES
    )
    expected[request_id_of(last.headers)] = CHAT_QUOTA

    assert len(expected) == 7
    assert_billed(world, expected)
    assert sum(expected.values()) == 5 * CHAT_QUOTA + 16 + 1
