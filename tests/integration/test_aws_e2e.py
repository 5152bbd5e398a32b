"""AWS Bedrock channels through a real Daphne, driven by the official `openai` SDK, against a
fake Bedrock that checks every request's SigV4 signature.

One Daphne serves the module; each test has its own user, key and AWS channel (which also
serves a probe model, so the test starts once the server's routing table has it).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from billing import pricing
from billing.models import ApiKey
from relay.catalog import ChannelType
from tests.factories import make_channel, make_user
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.integration.relay_setup import (
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLAUDE = "claude-3-5-sonnet-20240620"
LLAMA = "llama3-8b-8192"
ACCESS_KEY = "AKIDE2EBEDROCK"
SECRET_KEY = "e2e/Secret+Key"
REGION = "eu-central-1"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("aws-e2e-daphne"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


@pytest.fixture
def world(transactional_db: None, bedrock: FakeBedrock, server: DaphneServer) -> World:
    probe = f"e2e-aws-probe-{secrets.token_hex(3)}"
    user = make_user(quota=10_000_000)
    key = ApiKey.objects.create(
        user=user, key=secrets.token_hex(24), name="e2e key", remain_quota=5_000_000
    )
    channel = make_channel(
        type=ChannelType.AWS_CLAUDE,
        base_url=bedrock.base_url,
        key=f"{ACCESS_KEY}|{SECRET_KEY}|{REGION}",
        models=f"{CLAUDE},{LLAMA},{probe}",
        config=json.dumps({"ak": ACCESS_KEY, "sk": SECRET_KEY, "region": REGION}),
    )
    world = World(user, key, channel, 10_000_000, 5_000_000, probe)
    wait_for_routing(server.base_url, world)
    bedrock.reset()
    return world


@pytest.fixture
def client(server: DaphneServer, world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=world.api_key, max_retries=0)


def quota(model: str, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, ChannelType.AWS_CLAUDE) * pricing.group_ratio("default")
    return pricing.text_quota(
        prompt, completion, ratio, pricing.completion_ratio(model, ChannelType.AWS_CLAUDE)
    )


def request_id_of(headers: Any) -> str:
    request_id = headers["x-oneapi-request-id"]
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def test_claude_chat_through_sdk(client: openai.OpenAI, world: World, bedrock: FakeBedrock) -> None:
    raw = client.chat.completions.with_raw_response.create(model=CLAUDE, messages=MESSAGES)
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.model == CLAUDE
    assert completion.choices[0].message.content == bedrock.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (17, 8)
    sent = bedrock.last_request
    assert sent.path == "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/invoke"
    assert f"Credential={ACCESS_KEY}/" in sent.headers["authorization"]
    assert f"/{REGION}/bedrock/aws4_request" in sent.headers["authorization"]

    assert_billed(world, {request_id_of(raw.headers): quota(CLAUDE, 17, 8)})
    (log,) = world.logs()
    assert (log.prompt_tokens, log.completion_tokens, log.is_stream) == (17, 8, False)


def test_claude_stream_through_sdk(
    client: openai.OpenAI, world: World, bedrock: FakeBedrock
) -> None:
    bedrock.write_mode = "split"  # frames cut across reads: the relay must re-join them
    raw = client.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    request_id = request_id_of(raw.headers)
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == bedrock.reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (17, 8)
    assert bedrock.last_request.path.endswith("/invoke-with-response-stream")

    assert_billed(world, {request_id: quota(CLAUDE, 17, 8)})
    (log,) = world.logs()
    assert log.is_stream is True


def test_llama_chat_and_stream_through_sdk(
    client: openai.OpenAI, world: World, bedrock: FakeBedrock
) -> None:
    plain = client.chat.completions.with_raw_response.create(model=LLAMA, messages=MESSAGES)
    assert plain.parse().choices[0].message.content == bedrock.reply
    assert bedrock.last_request.json is not None
    assert bedrock.last_request.json["prompt"].startswith("<|begin_of_text|>")

    streamed = client.chat.completions.with_raw_response.create(
        model=LLAMA, messages=MESSAGES, stream=True
    )
    chunks = list(streamed.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == bedrock.reply
    assert all(c.usage is None for c in chunks)  # not asked for, still billed from counts

    expected = quota(LLAMA, 17, 8)
    assert_billed(
        world, {request_id_of(plain.headers): expected, request_id_of(streamed.headers): expected}
    )


def test_aws_throttling_reaches_the_sdk_as_429(
    client: openai.OpenAI, world: World, bedrock: FakeBedrock
) -> None:
    bedrock.scenario = "error_429"

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model=CLAUDE, messages=MESSAGES)

    assert "Too many requests, please wait before trying again." in caught.value.message
    world.refresh()
    assert world.user.used_quota == 0
