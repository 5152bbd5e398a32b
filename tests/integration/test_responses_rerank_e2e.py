"""`/v1/responses` (driven by the official `openai` SDK) and `/v1/rerank` (by httpx) through a
real Daphne, against FakeResponses standing in for OpenAI, Cohere and Jina.

One Daphne and one fake per provider style serve the module; each test has its own user, key
and channel (which also serves a probe model, so the test starts once the server's routing
table has it). Billing is checked on the rows the server's write-back thread updates.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from billing import pricing
from billing.models import ApiKey
from relay.catalog import ChannelType
from relay.tokens import count_text_tokens
from tests.factories import make_channel, make_user
from tests.fakes.responses_upstream import FakeResponses, word_count
from tests.integration.relay_setup import (
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_log_count,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEY = "sk-upstream"
MODEL = "gpt-4o"
COHERE_MODEL = "rerank-english-v3.0"
JINA_MODEL = "jina-reranker-v2-base-multilingual"
QUERY = "capital of France"
DOCUMENTS: list[Any] = [
    "Berlin is the capital of Germany.",
    {"text": "Paris is the capital of France."},
    "France borders Spain.",
]


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeResponses]:
    with FakeResponses(api_key=KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def cohere_fake() -> Iterator[FakeResponses]:
    with FakeResponses(api_key=KEY, rerank_style="cohere") as fake:
        yield fake


@pytest.fixture(scope="module")
def jina_fake() -> Iterator[FakeResponses]:
    with FakeResponses(api_key=KEY, rerank_style="jina") as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("responses-rerank-e2e"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


WorldFactory = Callable[..., World]


@pytest.fixture
def make_world(transactional_db: None, server: DaphneServer) -> WorldFactory:
    def build(channel_type: int, models: str, fake: FakeResponses) -> World:
        probe = f"e2e-probe-{secrets.token_hex(3)}"
        user = make_user(quota=10_000_000)
        key = ApiKey.objects.create(
            user=user, key=secrets.token_hex(24), name="e2e key", remain_quota=5_000_000
        )
        row = make_channel(
            type=channel_type, base_url=fake.base_url, key=KEY, models=f"{models},{probe}"
        )
        world = World(user, key, row, 10_000_000, 5_000_000, probe)
        wait_for_routing(server.base_url, world)
        fake.reset()
        return world

    return build


def sdk(server: DaphneServer, world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=world.api_key, max_retries=0)


def request_id_of(headers: Any) -> str:
    request_id = headers["x-oneapi-request-id"]
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def ratio(model: str, channel_type: int) -> float:
    return pricing.model_ratio(model, channel_type) * pricing.group_ratio("default")


def text_quota(model: str, channel_type: int, prompt: int, completion: int) -> int:
    return pricing.text_quota(
        prompt,
        completion,
        ratio(model, channel_type),
        pricing.completion_ratio(model, channel_type),
    )


# ---------------------------------------------------------------------- Responses


def test_responses_create_and_stream_through_the_sdk(
    server: DaphneServer, make_world: WorldFactory, openai_fake: FakeResponses
) -> None:
    world = make_world(ChannelType.OPENAI, MODEL, openai_fake)
    client = sdk(server, world)

    raw = client.responses.with_raw_response.create(model=MODEL, input="Hello there")
    answer = raw.parse()
    streamed = client.responses.with_raw_response.create(
        model=MODEL, input="Hello there", stream=True
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = list(streamed.parse())

    assert answer.object == "response"
    assert answer.output_text == openai_fake.reply
    assert answer.usage is not None
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (12, 7)
    types = [event.type for event in events]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == openai_fake.reply
    completed = events[-1].response
    assert completed.output_text == openai_fake.reply
    assert completed.usage is not None and completed.usage.total_tokens == 19
    assert [r.json.get("stream") for r in openai_fake.requests] == [None, True]

    expected = text_quota(MODEL, ChannelType.OPENAI, 12, 7)
    ids = {request_id_of(raw.headers): expected, request_id_of(streamed.headers): expected}
    assert_billed(world, ids)
    assert [log.is_stream for log in world.logs()] == [False, True]


def test_responses_without_usage_bill_the_counted_text(
    server: DaphneServer, make_world: WorldFactory, openai_fake: FakeResponses
) -> None:
    world = make_world(ChannelType.OPENAI, MODEL, openai_fake)
    openai_fake.scenario = "no_usage"

    streamed = sdk(server, world).responses.with_raw_response.create(
        model=MODEL, input="Hello there", stream=True
    )
    events = list(streamed.parse())

    assert events[-1].type == "response.completed" and events[-1].response.usage is None
    [log] = wait_for_log_count(world.user.pk, 1)
    prompt = count_text_tokens("Hello there", MODEL)
    completion = count_text_tokens(openai_fake.reply, MODEL)
    assert (log.prompt_tokens, log.completion_tokens) == (prompt, completion)
    expected = text_quota(MODEL, ChannelType.OPENAI, prompt, completion)
    assert_billed(world, {request_id_of(streamed.headers): expected})


def test_responses_on_a_channel_type_without_them_is_a_400(
    server: DaphneServer, make_world: WorldFactory, openai_fake: FakeResponses
) -> None:
    world = make_world(ChannelType.ANTHROPIC, MODEL, openai_fake)

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server, world).responses.create(model=MODEL, input="Hello there")

    assert "channel type Anthropic (14) does not support /v1/responses" in str(caught.value)
    assert openai_fake.requests == []
    assert world.logs() == []


def test_stored_responses_answer_501(
    server: DaphneServer, make_world: WorldFactory, openai_fake: FakeResponses
) -> None:
    world = make_world(ChannelType.OPENAI, MODEL, openai_fake)
    client = sdk(server, world)

    for call in (client.responses.retrieve, client.responses.delete):
        with pytest.raises(openai.APIStatusError) as caught:
            call("resp_123")
        assert caught.value.status_code == 501
        assert caught.value.code == "api_not_implemented"
    assert openai_fake.requests == []


# ---------------------------------------------------------------------- rerank


def post_rerank(server: DaphneServer, world: World, model: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/v1/rerank",
        json={"model": model, "query": QUERY, "documents": DOCUMENTS, "top_n": 2},
        headers=world.auth_headers,
        timeout=30,
    )


def test_cohere_rerank_is_billed_per_search_unit(
    server: DaphneServer, make_world: WorldFactory, cohere_fake: FakeResponses
) -> None:
    world = make_world(ChannelType.COHERE, COHERE_MODEL, cohere_fake)

    response = post_rerank(server, world, COHERE_MODEL)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert [result["index"] for result in answer["results"]] == [1, 0]
    assert answer["usage"] == {"prompt_tokens": 0, "total_tokens": 0, "search_units": 1}
    assert answer["meta"]["billed_units"] == {"search_units": 1}
    assert cohere_fake.last_request.path == "/v1/rerank"
    expected = math.ceil(1 * 1000 * ratio(COHERE_MODEL, ChannelType.COHERE))
    assert_billed(world, {request_id_of(response.headers): expected})


def test_jina_rerank_through_a_custom_channel_is_billed_per_token(
    server: DaphneServer, make_world: WorldFactory, jina_fake: FakeResponses
) -> None:
    world = make_world(ChannelType.CUSTOM, JINA_MODEL, jina_fake)

    response = post_rerank(server, world, JINA_MODEL)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["results"][0]["document"] == {"text": "Paris is the capital of France."}
    texts = [QUERY, *(d if isinstance(d, str) else d["text"] for d in DOCUMENTS)]
    tokens = sum(word_count(text) for text in texts)
    assert answer["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    expected = pricing.text_quota(tokens, 0, ratio(JINA_MODEL, ChannelType.CUSTOM), 1.0)
    assert_billed(world, {request_id_of(response.headers): expected})
    [log] = world.logs()
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (tokens, 0, JINA_MODEL)
