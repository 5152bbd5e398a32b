"""Image URLs through the relay: counted by the fetched image's size, and sent inline to
the upstreams that take no URL (AWS Claude, Gemini, Ollama). Images come from a real local
HTTP server, reachable only where a test allows loopback addresses."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from relay import images
from relay.catalog import ChannelType
from tests.factories import make_channel
from tests.fakes.bedrock_upstream import FakeBedrock
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.image_host import FakeImageHost, jpeg, png
from tests.fakes.ollama_upstream import FakeOllama
from tests.relay.conftest import World

pytestmark = pytest.mark.django_db

CLAUDE = "claude-3-5-sonnet-20240620"
GEMINI = "gemini-1.5-flash"
ACCESS_KEY, SECRET_KEY, REGION = "AKIDFAKEBEDROCK", "fake/Secret+Key", "us-west-2"


@pytest.fixture(scope="module")
def image_host() -> Iterator[FakeImageHost]:
    with FakeImageHost() as server:
        yield server


@pytest.fixture
def host(image_host: FakeImageHost) -> FakeImageHost:
    image_host.reset()
    return image_host


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    images.size_cache.clear()


@pytest.fixture
def allow_private() -> Iterator[None]:
    with override_settings(IMAGE_FETCH_ALLOW_PRIVATE=True):
        yield


def chat(model: str, *parts: dict[str, Any]) -> dict[str, Any]:
    content = [{"type": "text", "text": "What is in this image?"}, *parts]
    return {"model": model, "messages": [{"role": "user", "content": content}]}


def image(url: str, detail: str = "auto") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": detail}}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def logged_prompt(world: World, payload: dict[str, Any]) -> int:
    """The prompt tokens billed for a chat whose upstream reports no usage."""
    Log.objects.all().delete()
    result = world.client.post("/v1/chat/completions", payload)
    assert result.status == 200, result.body
    world.runtime.flush()
    return Log.objects.get().prompt_tokens


# ---------------------------------------------------------------------- counting


def test_prompt_tokens_and_billing_use_the_fetched_images_size(
    world: World, host: FakeImageHost, allow_private: None
) -> None:
    world.upstream.scenario = "no_usage"
    model = "gpt-3.5-turbo"
    text_only = logged_prompt(world, chat(model))

    tall = f"{host.base_url}/png/2048x4096.png"
    assert logged_prompt(world, chat(model, image(tall))) == text_only + 1105
    small = f"{host.base_url}/jpeg/100x100.jpg"
    assert logged_prompt(world, chat(model, image(small))) == text_only + 255
    assert logged_prompt(world, chat(model, image(tall, "low"))) == text_only + 85
    both = chat(model, image(tall), image(small), image(tall))
    assert logged_prompt(world, both) == text_only + 2 * 1105 + 255
    # A data: URL of the same image counts the same, measured without a fetch.
    data_url = f"data:image/png;base64,{b64(png(2048, 4096))}"
    assert logged_prompt(world, chat(model, image(data_url))) == text_only + 1105

    # OpenAI gets the URL as sent; the quota follows the counted prompt.
    assert world.upstream.last_request.json["messages"][0]["content"][1]["image_url"] == {
        "url": data_url,
        "detail": "auto",
    }
    log = Log.objects.get()
    ratio = pricing.model_ratio(model)
    completion = log.completion_tokens
    expected = pricing.text_quota(
        text_only + 1105, completion, ratio, pricing.completion_ratio(model)
    )
    assert log.quota == expected


def test_gpt_4o_mini_images_cost_its_own_price(
    world: World, host: FakeImageHost, allow_private: None
) -> None:
    world.upstream.scenario = "no_usage"
    text_only = logged_prompt(world, chat("gpt-4o-mini"))
    square = f"{host.base_url}/png/1024x1024.png"
    assert logged_prompt(world, chat("gpt-4o-mini", image(square))) == text_only + 4 * 5667 + 2833


def test_an_image_that_cannot_be_fetched_counts_nothing(world: World, host: FakeImageHost) -> None:
    """One API logs the failure and counts no tokens for it; OpenAI itself decides."""
    world.upstream.scenario = "no_usage"
    text_only = logged_prompt(world, chat("gpt-3.5-turbo"))
    refused = f"{host.base_url}/png/2048x4096.png"  # loopback: refused by default
    assert logged_prompt(world, chat("gpt-3.5-turbo", image(refused))) == text_only
    assert host.requests == []


# ---------------------------------------------------------------------- inline upstreams


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION) as fake:
        yield fake


@pytest.fixture
def bedrock_channel(world: World, bedrock: FakeBedrock) -> Channel:
    bedrock.reset()
    return make_channel(
        type=ChannelType.AWS_CLAUDE,
        base_url=bedrock.base_url,
        key=f"{ACCESS_KEY}|{SECRET_KEY}|{REGION}",
        models=CLAUDE,
        config=json.dumps({"region": REGION}),
    )


def test_aws_claude_gets_remote_images_inline(
    world: World,
    bedrock_channel: Channel,
    bedrock: FakeBedrock,
    host: FakeImageHost,
    allow_private: None,
) -> None:
    url = f"{host.base_url}/png/64x32.png"
    result = world.client.post("/v1/chat/completions", chat(CLAUDE, image(url)))

    assert result.status == 200, result.body
    blocks = bedrock.last_request.json["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": b64(png(64, 32))},
    }


def test_a_refused_image_is_a_client_error_and_costs_nothing(
    world: World, bedrock_channel: Channel, bedrock: FakeBedrock, host: FakeImageHost
) -> None:
    for url, reason in [
        (f"{host.base_url}/png/64x32.png", "127.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/iam", "169.254.169.254 is a private address"),
        (f"http://localhost:{host.port}/x.png", "localhost resolves to a private address"),
    ]:
        result = world.client.post("/v1/chat/completions", chat(CLAUDE, image(url)))

        assert result.status == 400, result.body
        error = result.json()["error"]
        assert error["code"] == "invalid_image_url"
        assert reason in error["message"]
    assert bedrock.requests == []
    world.refresh()
    assert world.user.used_quota == 0
    assert world.key.remain_quota == 5_000_000
    assert not Log.objects.exists()


def test_a_failed_image_fetch_is_a_client_error(
    world: World, bedrock_channel: Channel, bedrock: FakeBedrock, host: FakeImageHost
) -> None:
    with override_settings(IMAGE_FETCH_ALLOW_PRIVATE=True):
        result = world.client.post(
            "/v1/chat/completions", chat(CLAUDE, image(f"{host.base_url}/missing"))
        )
    assert result.status == 400
    assert result.json()["error"]["message"].startswith("image URL answered HTTP 404")
    assert bedrock.requests == []


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(api_key="gemini-key") as fake:
        yield fake


def test_gemini_gets_remote_images_inline(
    world: World, gemini: FakeGemini, host: FakeImageHost, allow_private: None
) -> None:
    make_channel(type=ChannelType.GEMINI, base_url=gemini.base_url, key="gemini-key", models=GEMINI)
    url = f"{host.base_url}/jpeg/640x480.jpg"

    result = world.client.post("/v1/chat/completions", chat(GEMINI, image(url)))

    assert result.status == 200, result.body
    parts = gemini.last_request.json["contents"][0]["parts"]
    assert parts[1] == {"inlineData": {"mimeType": "image/jpeg", "data": b64(jpeg(640, 480))}}


def test_ollama_gets_remote_images_inline(
    world: World, host: FakeImageHost, allow_private: None
) -> None:
    with FakeOllama() as ollama:
        make_channel(
            type=ChannelType.OLLAMA, base_url=ollama.base_url, key="", models="llava:latest"
        )
        url = f"{host.base_url}/png/8x8.png"

        result = world.client.post("/v1/chat/completions", chat("llava:latest", image(url)))

        assert result.status == 200, result.body
        assert ollama.last_request.json["messages"][0]["images"] == [b64(png(8, 8))]
