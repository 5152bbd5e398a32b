"""Ali (DashScope native), Tencent Hunyuan and Xunfei Spark channels through a real Daphne,
driven by the official `openai` SDK against the fake upstreams, streaming and not, with
billing checked on the rows the server's write-back thread updates."""

from __future__ import annotations

import base64
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
from tests.fakes.ali_upstream import PNG_1X1, FakeAli, ali_vector
from tests.fakes.tencent_upstream import FakeTencent
from tests.fakes.xunfei_upstream import FakeXunfei
from tests.integration.relay_setup import (
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MESSAGES: list[Any] = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def ali() -> Iterator[FakeAli]:
    with FakeAli(api_key="sk-ali") as fake:
        yield fake


@pytest.fixture(scope="module")
def tencent() -> Iterator[FakeTencent]:
    with FakeTencent() as fake:
        yield fake


@pytest.fixture(scope="module")
def spark() -> Iterator[FakeXunfei]:
    with FakeXunfei() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("alitx-daphne"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


def make_world(
    server: DaphneServer, channel_type: int, base_url: str, key: str, models: str
) -> World:
    """A user, a key and one channel of `channel_type`, once the server routes to it."""
    probe = f"e2e-probe-alitx-{secrets.token_hex(4)}"
    user = make_user(quota=10_000_000)
    api_key = ApiKey.objects.create(
        user=user, key=secrets.token_hex(24), name="e2e key", remain_quota=5_000_000
    )
    channel = make_channel(
        type=channel_type, base_url=base_url, key=key, models=f"{models},{probe}"
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


def request_id_of(headers: Any) -> str:
    request_id = headers["x-oneapi-request-id"]
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def chat_both_ways(
    client: openai.OpenAI, model: str, reply: str, channel_type: int
) -> dict[str, int]:
    """One plain and one streamed completion (with a usage chunk); their expected charges."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == model
    assert completion.choices[0].message.content == reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)

    streamed = client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    chunks = list(streamed.parse())
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == reply
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1
    assert usage_chunks[0] is chunks[-1]
    assert usage_chunks[0].usage is not None
    assert usage_chunks[0].usage.completion_tokens == 7

    charge = quota(model, channel_type, 11, 7)
    return {request_id_of(raw.headers): charge, request_id_of(streamed.headers): charge}


# --------------------------------------------------------------------------- Ali


def test_ali_chat_stream_tools_and_embeddings(
    transactional_db: None, server: DaphneServer, ali: FakeAli
) -> None:
    ali.reset()
    world = make_world(
        server, ChannelType.ALI, ali.base_url, "sk-ali", "qwen-turbo,text-embedding-v1"
    )
    client = sdk(server, world)

    expected = chat_both_ways(client, "qwen-turbo", ali.reply, ChannelType.ALI)
    assert ali.requests[-1].headers["x-dashscope-sse"] == "enable"

    raw = client.chat.completions.with_raw_response.create(
        model="qwen-turbo", messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == "get_weather"
    expected[request_id_of(raw.headers)] = quota("qwen-turbo", ChannelType.ALI, 11, 7)

    # The SDK asks for base64 embeddings by default; the gateway encodes DashScope's floats.
    embedded = client.embeddings.with_raw_response.create(
        model="text-embedding-v1", input=["one two", "three"]
    )
    vectors = embedded.parse()
    assert [item.index for item in vectors.data] == [0, 1]
    assert vectors.data[1].embedding == pytest.approx(ali_vector("three"))
    assert vectors.usage.prompt_tokens == 3
    expected[request_id_of(embedded.headers)] = quota("text-embedding-v1", ChannelType.ALI, 3, 0)

    assert_billed(world, expected)


def test_ali_image_tasks_are_polled_to_urls_or_base64(
    transactional_db: None, server: DaphneServer, ali: FakeAli
) -> None:
    ali.reset()
    ali.task_polls = 0  # done at the first poll: one poll interval per request
    world = make_world(server, ChannelType.ALI, ali.base_url, "sk-ali", "wanx-v1")
    client = sdk(server, world)

    urls = client.images.with_raw_response.generate(
        model="wanx-v1", prompt="A cat", n=2, size="1024x1024"
    )
    inline = client.images.with_raw_response.generate(
        model="wanx-v1", prompt="A cat", response_format="b64_json"
    )

    task = task_of(ali, 0)
    expected_urls = [ali.image_url(f"{task}-{i}") for i in range(2)]
    assert [image.url for image in urls.parse().data or ()] == expected_urls
    (image,) = inline.parse().data or ()
    assert image.b64_json is not None
    assert base64.b64decode(image.b64_json) == PNG_1X1
    per_image = int(pricing.model_ratio("wanx-v1", ChannelType.ALI) * 1000)
    assert_billed(
        world,
        {request_id_of(urls.headers): 2 * per_image, request_id_of(inline.headers): per_image},
    )


def task_of(ali: FakeAli, n: int) -> str:
    """The id of the n-th image task the fake was asked to poll."""
    polls = [r.path for r in ali.requests if r.method == "GET" and "/tasks/" in r.path]
    return polls[n].rsplit("/", 1)[-1]


def test_ali_errors_keep_dashscopes_status_and_message(
    transactional_db: None, server: DaphneServer, ali: FakeAli
) -> None:
    ali.reset()
    world = make_world(server, ChannelType.ALI, ali.base_url, "sk-ali", "qwen-turbo")
    ali.scenario = "data_inspection"

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(server, world).chat.completions.create(model="qwen-turbo", messages=MESSAGES)

    assert "Input data may contain bad content." in str(caught.value)
    world.refresh()
    assert world.user.used_quota == 0


# --------------------------------------------------------------------------- Tencent


def test_tencent_chat_stream_and_embeddings(
    transactional_db: None, server: DaphneServer, tencent: FakeTencent
) -> None:
    tencent.reset()
    world = make_world(
        server,
        ChannelType.TENCENT,
        tencent.base_url,
        tencent.key,
        "hunyuan-lite,hunyuan-embedding",
    )
    client = sdk(server, world)

    expected = chat_both_ways(client, "hunyuan-lite", tencent.reply, ChannelType.TENCENT)
    assert tencent.last_request.action == "ChatCompletions"
    assert tencent.last_request.headers["authorization"].startswith("TC3-HMAC-SHA256 ")

    embedded = client.embeddings.with_raw_response.create(model="hunyuan-embedding", input="one")
    assert len(embedded.parse().data[0].embedding) == tencent.embedding_dimensions
    expected[request_id_of(embedded.headers)] = quota(
        "hunyuan-embedding", ChannelType.TENCENT, 1, 0
    )

    assert_billed(world, expected)


def test_tencent_signature_failure_is_a_401(
    transactional_db: None, server: DaphneServer, tencent: FakeTencent
) -> None:
    tencent.reset()
    bad_key = f"1|{tencent.secret_id}|not-the-secret"
    world = make_world(server, ChannelType.TENCENT, tencent.base_url, bad_key, "hunyuan-lite")

    with pytest.raises(openai.AuthenticationError) as caught:
        sdk(server, world).chat.completions.create(model="hunyuan-lite", messages=MESSAGES)

    assert "could not be validated" in str(caught.value)


# --------------------------------------------------------------------------- Xunfei


def test_xunfei_chat_and_stream_over_the_websocket(
    transactional_db: None, server: DaphneServer, spark: FakeXunfei
) -> None:
    spark.reset()
    world = make_world(server, ChannelType.XUNFEI, spark.base_url, spark.key, "Spark-Max")

    expected = chat_both_ways(sdk(server, world), "Spark-Max", spark.reply, ChannelType.XUNFEI)

    assert [c.path for c in spark.connections] == ["/v3.5/chat", "/v3.5/chat"]
    assert all(c.refused is None for c in spark.connections)
    assert_billed(world, expected)
