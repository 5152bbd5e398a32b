"""Azure OpenAI and two OpenAI-compatible vendors (Volcengine Ark, OpenRouter) through a real
Daphne, driven by the official `openai` SDK: the SDK speaks plain OpenAI to the gateway, the
gateway speaks each vendor's dialect of URLs and keys to its fake, and every request is billed
from the upstream's usage exactly once."""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from billing import pricing
from billing.models import ApiKey
from relay.catalog import ChannelType
from tests.factories import make_channel, make_user
from tests.fakes.azure_upstream import FakeAzure
from tests.integration.relay_setup import (
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_routing,
)
from tests.relay.test_openai_family import VendorFake, vendor_paths

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

AZURE_KEY = "azure-e2e-key"
VENDOR_KEY = "sk-vendor-e2e"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("openai-family-daphne"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


@pytest.fixture(scope="module")
def azure() -> Iterator[FakeAzure]:
    deployments = {
        "gpt-35-turbo": "gpt-35-turbo",
        "text-embedding-3-small": "text-embedding-3-small",
        "dall-e-3": "dall-e-3",
    }
    with FakeAzure(api_key=AZURE_KEY, deployments=deployments) as fake:
        yield fake


@pytest.fixture(scope="module")
def ark() -> Iterator[VendorFake]:
    paths = {
        **vendor_paths(ChannelType.DOUBAO),
        "/api/v3/bots/chat/completions": "/v1/chat/completions",
    }
    with VendorFake(paths, api_key=VENDOR_KEY, prompt_tokens=21, completion_tokens=9) as fake:
        yield fake


@pytest.fixture(scope="module")
def openrouter() -> Iterator[VendorFake]:
    with VendorFake(vendor_paths(ChannelType.OPENROUTER), api_key=VENDOR_KEY) as fake:
        yield fake


def vendor_world(server: DaphneServer, channel_type: int, **channel: Any) -> World:
    """A user, a key and one channel of `channel_type`, loaded by the server."""
    probe = f"e2e-probe-{secrets.token_hex(4)}"
    user = make_user(quota=10_000_000)
    key = ApiKey.objects.create(
        user=user, key=secrets.token_hex(24), name="e2e key", remain_quota=5_000_000
    )
    models = f"{channel.pop('models')},{probe}"
    row = make_channel(type=channel_type, models=models, **channel)
    world = World(user, key, row, 10_000_000, 5_000_000, probe)
    wait_for_routing(server.base_url, world)
    return world


def client_for(server: DaphneServer, world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=world.api_key, max_retries=0)


def text_quota(model: str, channel_type: int, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, channel_type) * pricing.group_ratio("default")
    completion_ratio = pricing.completion_ratio(model, channel_type)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


# --------------------------------------------------------------------------- Azure


@pytest.fixture
def azure_world(transactional_db: None, server: DaphneServer, azure: FakeAzure) -> World:
    world = vendor_world(
        server,
        ChannelType.AZURE,
        base_url=azure.base_url,
        key=AZURE_KEY,
        models="gpt-3.5-turbo,text-embedding-3-small,dall-e-3",
        config='{"api_version": "2024-10-21"}',
    )
    azure.reset()
    return world


def test_azure_chat_through_the_sdk(
    server: DaphneServer, azure_world: World, azure: FakeAzure
) -> None:
    client = client_for(server, azure_world)
    raw = client.chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=MESSAGES)
    completion = raw.parse()

    assert completion.choices[0].message.content == azure.reply
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 6)
    sent = azure.last_request
    assert sent.path == "/openai/deployments/gpt-35-turbo/chat/completions"
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == AZURE_KEY
    assert "authorization" not in sent.headers
    assert sent.json == {"model": "gpt-3.5-turbo", "messages": MESSAGES}

    request_id = raw.headers["x-oneapi-request-id"]
    quota = text_quota("gpt-3.5-turbo", ChannelType.AZURE, 12, 6)
    assert_billed(azure_world, {request_id: quota})
    (log,) = azure_world.logs()
    assert (log.prompt_tokens, log.completion_tokens, log.is_stream) == (12, 6, False)


@pytest.mark.parametrize("include_usage", [False, True])
def test_azure_chat_stream_through_the_sdk(
    server: DaphneServer, azure_world: World, azure: FakeAzure, include_usage: bool
) -> None:
    client = client_for(server, azure_world)
    extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if include_usage else {}
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-3.5-turbo", messages=MESSAGES, stream=True, **extra
    )
    chunks = list(raw.parse())

    # Azure's choice-less prompt-filter chunk never reaches the client.
    with_choices = [chunk for chunk in chunks if chunk.choices]
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    assert len(with_choices) + len(usage_chunks) == len(chunks)
    assert "".join(c.choices[0].delta.content or "" for c in with_choices) == azure.reply
    assert with_choices[-1].choices[0].finish_reason == "stop"
    assert len(usage_chunks) == (1 if include_usage else 0)
    assert azure.last_request.json is not None
    assert azure.last_request.json["stream_options"] == {"include_usage": True}

    request_id = raw.headers["x-oneapi-request-id"]
    quota = text_quota("gpt-3.5-turbo", ChannelType.AZURE, 12, 6)
    assert_billed(azure_world, {request_id: quota})
    (log,) = azure_world.logs()
    assert log.is_stream


def test_azure_embeddings_and_images_through_the_sdk(
    server: DaphneServer, azure_world: World, azure: FakeAzure
) -> None:
    client = client_for(server, azure_world)
    embedded = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["one", "two"]
    )
    assert len(embedded.parse().data) == 2
    assert azure.last_request.path == "/openai/deployments/text-embedding-3-small/embeddings"

    image = client.images.with_raw_response.generate(
        model="dall-e-3", prompt="a red fox", size="1024x1024"
    )
    assert image.parse().data[0].url
    assert azure.last_request.path == "/openai/deployments/dall-e-3/images/generations"

    image_ratio = pricing.model_ratio("dall-e-3", ChannelType.AZURE)
    assert_billed(
        azure_world,
        {
            embedded.headers["x-oneapi-request-id"]: text_quota(
                "text-embedding-3-small", ChannelType.AZURE, 12, 0
            ),
            image.headers["x-oneapi-request-id"]: int(image_ratio * 1000),
        },
    )


def test_azure_content_filter_error_reaches_the_sdk(
    server: DaphneServer, azure_world: World, azure: FakeAzure
) -> None:
    azure.scenario = "prompt_filtered"
    client = client_for(server, azure_world)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=MESSAGES)
    assert caught.value.code == "content_filter"
    assert "content management policy" in caught.value.message
    azure_world.refresh()
    assert azure_world.user.used_quota == 0
    assert azure_world.user.quota == azure_world.initial_quota
    assert azure_world.logs() == []


# --------------------------------------------------------------------------- Volcengine Ark


@pytest.fixture
def ark_world(transactional_db: None, server: DaphneServer, ark: VendorFake) -> World:
    world = vendor_world(
        server,
        ChannelType.DOUBAO,
        base_url=ark.base_url + "/api/v3",  # the base URL Ark's docs give the SDK
        key=VENDOR_KEY,
        models="doubao-pro-32k,bot-20250101-abcde",
    )
    ark.reset()
    return world


@pytest.mark.parametrize("model", ["doubao-pro-32k", "bot-20250101-abcde"])
def test_ark_chat_through_the_sdk(
    server: DaphneServer, ark_world: World, ark: VendorFake, model: str
) -> None:
    client = client_for(server, ark_world)
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)

    assert raw.parse().choices[0].message.content == ark.reply
    sent = ark.last_request
    bots = model.startswith("bot-")
    assert sent.path == ("/api/v3/bots/chat/completions" if bots else "/api/v3/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {VENDOR_KEY}"
    assert sent.json == {"model": model, "messages": MESSAGES}
    quota = text_quota(model, ChannelType.DOUBAO, 21, 9)
    assert_billed(ark_world, {raw.headers["x-oneapi-request-id"]: quota})


def test_ark_chat_stream_through_the_sdk(
    server: DaphneServer, ark_world: World, ark: VendorFake
) -> None:
    client = client_for(server, ark_world)
    raw = client.chat.completions.with_raw_response.create(
        model="doubao-pro-32k", messages=MESSAGES, stream=True
    )
    chunks = list(raw.parse())

    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ark.reply
    assert ark.last_request.path == "/api/v3/chat/completions"
    quota = text_quota("doubao-pro-32k", ChannelType.DOUBAO, 21, 9)
    assert_billed(ark_world, {raw.headers["x-oneapi-request-id"]: quota})
    (log,) = ark_world.logs()
    assert (log.prompt_tokens, log.completion_tokens, log.is_stream) == (21, 9, True)


# --------------------------------------------------------------------------- OpenRouter


@pytest.fixture
def openrouter_world(transactional_db: None, server: DaphneServer, openrouter: VendorFake) -> World:
    world = vendor_world(
        server,
        ChannelType.OPENROUTER,
        base_url=openrouter.base_url + "/api",
        key=VENDOR_KEY,
        models="anthropic/claude-3.5-sonnet",
    )
    openrouter.reset()
    return world


@pytest.mark.parametrize("stream", [False, True])
def test_openrouter_chat_through_the_sdk(
    server: DaphneServer, openrouter_world: World, openrouter: VendorFake, stream: bool
) -> None:
    model = "anthropic/claude-3.5-sonnet"
    client = client_for(server, openrouter_world)
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=stream
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content or ""

    assert text == openrouter.reply
    sent = openrouter.last_request
    assert sent.path == "/api/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {VENDOR_KEY}"
    assert sent.headers["http-referer"] == "https://github.com/songquanpeng/one-api"
    assert sent.headers["x-title"] == "One API"
    quota = text_quota(model, ChannelType.OPENROUTER, 11, 7)
    assert_billed(openrouter_world, {raw.headers["x-oneapi-request-id"]: quota})
