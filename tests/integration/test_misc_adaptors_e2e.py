"""Coze, Cloudflare Workers AI and Replicate through a real Daphne, driven by the official
`openai` SDK against the fake upstreams; billing checked on the rows the server updates.

One Daphne and one fake of each family serve the module; every test makes its own user,
key and channel (with a model unique to the test, so it can wait until the server routes
to the channel)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from billing import pricing
from billing.models import ApiKey
from oneapi import options
from relay import usage
from relay.catalog import ChannelType
from tests.factories import make_channel, make_user
from tests.fakes.misc_upstreams import FakeCloudflare, FakeCoze, FakeReplicate
from tests.integration.relay_setup import (
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

COZE_MODEL = "bot-7342"
CF_MODEL = "@cf/meta/llama-3.1-8b-instruct"
REPLICATE_MODEL = "meta/meta-llama-3-8b-instruct"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("misc-e2e-daphne"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


@pytest.fixture(scope="module")
def coze_fake() -> Iterator[FakeCoze]:
    with FakeCoze() as fake:
        yield fake


@pytest.fixture(scope="module")
def cf_fake() -> Iterator[FakeCloudflare]:
    with FakeCloudflare() as fake:
        yield fake


@pytest.fixture(scope="module")
def replicate_fake() -> Iterator[FakeReplicate]:
    with FakeReplicate() as fake:
        yield fake


def make_family_world(
    server: DaphneServer, channel_type: int, base_url: str, key: str, model: str, **config: str
) -> World:
    probe = f"misc-probe-{secrets.token_hex(4)}"
    user = make_user(quota=10_000_000)
    api_key = ApiKey.objects.create(
        user=user, key=secrets.token_hex(24), name="e2e key", remain_quota=5_000_000
    )
    channel = make_channel(
        type=channel_type,
        base_url=base_url,
        key=key,
        models=f"{model},{probe}",
        config=orjson.dumps(config).decode(),
    )
    world = World(user, api_key, channel, 10_000_000, 5_000_000, probe)
    wait_for_routing(server.base_url, world)
    return world


def sdk(server: DaphneServer, world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=world.api_key, max_retries=0)


def quota(model: str, channel_type: int, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, channel_type) * pricing.group_ratio("default")
    return pricing.text_quota(
        prompt, completion, ratio, pricing.completion_ratio(model, channel_type)
    )


def counted(model: str, reply: str) -> tuple[int, int]:
    """The relay's own counts when the upstream reports none."""
    snapshot = options.load_snapshot()
    return usage.count_messages(MESSAGES, model, snapshot), usage.count_text(reply, model, snapshot)


# --------------------------------------------------------------------------- Coze


def test_coze_chat_and_stream(server: DaphneServer, coze_fake: FakeCoze) -> None:
    world = make_family_world(
        server, ChannelType.COZE, coze_fake.base_url, "pat-test", COZE_MODEL, user_id="u-9"
    )
    client = sdk(server, world)

    raw = client.chat.completions.with_raw_response.create(model=COZE_MODEL, messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == coze_fake.reply
    assert completion.model == COZE_MODEL
    sent = coze_fake.last_request.json
    assert sent is not None and (sent["bot_id"], sent["user"]) == ("7342", "u-9")

    stream = client.chat.completions.with_raw_response.create(
        model=COZE_MODEL, messages=MESSAGES, stream=True
    )
    chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == coze_fake.reply
    assert chunks[-1].choices[0].finish_reason == "stop"

    prompt, completion_tokens = counted(COZE_MODEL, coze_fake.reply)
    expected = quota(COZE_MODEL, ChannelType.COZE, prompt, completion_tokens)
    assert_billed(
        world,
        {
            raw.headers["x-oneapi-request-id"]: expected,
            stream.headers["x-oneapi-request-id"]: expected,
        },
    )
    logs = world.logs()
    assert [(log.prompt_tokens, log.completion_tokens) for log in logs] == [
        (prompt, completion_tokens)
    ] * 2
    assert [log.is_stream for log in logs] == [False, True]


def test_coze_error_code_reaches_the_sdk(server: DaphneServer, coze_fake: FakeCoze) -> None:
    world = make_family_world(server, ChannelType.COZE, coze_fake.base_url, "pat-test", COZE_MODEL)
    coze_fake.fail_times(1, "error_code")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        sdk(server, world).chat.completions.create(model=COZE_MODEL, messages=MESSAGES)
    assert "not been published" in caught.value.message
    world.refresh()
    assert world.user.used_quota == 0


# --------------------------------------------------------------------------- Cloudflare


def test_cloudflare_chat_stream_and_embeddings(
    server: DaphneServer, cf_fake: FakeCloudflare
) -> None:
    embedding_model = "@cf/baai/bge-base-en-v1.5"
    world = make_family_world(
        server,
        ChannelType.CLOUDFLARE,
        cf_fake.base_url,
        "cf-token",
        f"{CF_MODEL},{embedding_model}",
        user_id=cf_fake.account_id,
    )
    client = sdk(server, world)

    raw = client.chat.completions.with_raw_response.create(
        model=CF_MODEL, messages=MESSAGES, temperature=1.5, max_tokens=40
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == cf_fake.reply
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (17, 8)

    stream = client.chat.completions.with_raw_response.create(
        model=CF_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == cf_fake.reply
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 25

    embedded = client.embeddings.with_raw_response.create(
        model=embedding_model, input=["first text", "second"]
    )
    vectors = embedded.parse()
    assert [len(item.embedding) for item in vectors.data] == [768, 768]  # base64 decoded by SDK

    chat_quota = quota(CF_MODEL, ChannelType.CLOUDFLARE, 17, 8)
    snapshot = options.load_snapshot()
    embedding_tokens = usage.count_input(["first text", "second"], embedding_model, snapshot)
    embedding_quota = quota(embedding_model, ChannelType.CLOUDFLARE, embedding_tokens, 0)
    assert_billed(
        world,
        {
            raw.headers["x-oneapi-request-id"]: chat_quota,
            stream.headers["x-oneapi-request-id"]: chat_quota,
            embedded.headers["x-oneapi-request-id"]: embedding_quota,
        },
    )


# --------------------------------------------------------------------------- Replicate


def test_replicate_chat_polled_and_replayed_as_a_stream(
    server: DaphneServer, replicate_fake: FakeReplicate
) -> None:
    world = make_family_world(
        server,
        ChannelType.REPLICATE,
        replicate_fake.base_url + "/v1/models/",
        "r8_test",
        REPLICATE_MODEL,
    )
    client = sdk(server, world)
    replicate_fake.polls_to_finish = 2
    try:
        raw = client.chat.completions.with_raw_response.create(
            model=REPLICATE_MODEL, messages=MESSAGES, max_tokens=20
        )
    finally:
        replicate_fake.polls_to_finish = 0
    completion = raw.parse()
    assert completion.choices[0].message.content == replicate_fake.reply
    assert completion.usage is not None and completion.usage.total_tokens == 18
    created = [r for r in replicate_fake.requests if r.method == "POST"][-1]
    assert created.json == {"input": {"prompt": "Hello there", "max_tokens": 20}}

    stream = client.chat.completions.with_raw_response.create(
        model=REPLICATE_MODEL, messages=MESSAGES, stream=True
    )
    chunks = list(stream.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == replicate_fake.reply

    expected = quota(REPLICATE_MODEL, ChannelType.REPLICATE, 12, 6)
    assert_billed(
        world,
        {
            raw.headers["x-oneapi-request-id"]: expected,
            stream.headers["x-oneapi-request-id"]: expected,
        },
    )


def test_replicate_images(server: DaphneServer, replicate_fake: FakeReplicate) -> None:
    model = "black-forest-labs/flux-schnell"
    world = make_family_world(
        server, ChannelType.REPLICATE, replicate_fake.base_url, "r8_test", model
    )
    raw = sdk(server, world).images.with_raw_response.generate(
        model=model, prompt="A lighthouse at dusk", n=2, size="1792x1024"
    )
    images = raw.parse()
    assert images.data is not None and len(images.data) == 2
    assert all(
        (item.url or "").startswith(f"{replicate_fake.base_url}/files/") for item in images.data
    )
    ratio = pricing.model_ratio(model, ChannelType.REPLICATE) * pricing.group_ratio("default")
    assert_billed(world, {raw.headers["x-oneapi-request-id"]: int(ratio * 1000) * 2})
