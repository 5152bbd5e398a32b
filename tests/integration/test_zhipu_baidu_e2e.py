"""Zhipu GLM and Baidu ERNIE channels through a real Daphne, driven by the `openai` SDK.

One Daphne serves the module, with a fake open.bigmodel.cn (which verifies every JWT with
PyJWT) and a fake aip.baidubce.com (token exchange and model API) in this process. Each
test makes its own user, key and channel and waits until the server routes to it; billing
is checked on the rows the server's write-back thread updates.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import struct
import threading
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from billing import pricing
from billing.models import ApiKey
from relay.catalog import ChannelType
from tests.factories import make_channel, make_user
from tests.fakes.baidu_upstream import FakeBaidu, baidu_vector
from tests.fakes.zhipu_upstream import FakeZhipu, zhipu_vector
from tests.integration.relay_setup import (
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ZHIPU_KEY = "e2e0123456789abcdef0123456789ab.e2eSecretE2eSecretE2eSecret01234"
ZHIPU_MODEL = "glm-4"
BAIDU_MODEL = "ERNIE-3.5-8K"
MESSAGES = [{"role": "user", "content": "你好"}]
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}


@pytest.fixture(scope="module")
def glm() -> Iterator[FakeZhipu]:
    with FakeZhipu(api_key=ZHIPU_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def ernie() -> Iterator[FakeBaidu]:
    with FakeBaidu(client_id="e2e-ak", client_secret="e2e-sk") as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("zhipu-baidu-daphne"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


def make_world(
    server: DaphneServer, channel_type: int, base_url: str, key: str, models: str
) -> World:
    probe = f"e2e-probe-{secrets.token_hex(4)}"
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


@pytest.fixture
def zhipu_world(transactional_db: None, server: DaphneServer, glm: FakeZhipu) -> World:
    world = make_world(
        server, ChannelType.ZHIPU, glm.base_url, ZHIPU_KEY, "glm-4,chatglm_turbo,embedding-3"
    )
    glm.reset()
    return world


@pytest.fixture
def baidu_world(transactional_db: None, server: DaphneServer, ernie: FakeBaidu) -> World:
    world = make_world(
        server, ChannelType.BAIDU, ernie.base_url, ernie.key, f"{BAIDU_MODEL},Embedding-V1"
    )
    ernie.reset()
    return world


def sdk(server: DaphneServer, world: World) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=world.api_key, max_retries=0)


def request_id_of(headers: Any) -> str:
    request_id = headers["x-oneapi-request-id"]
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def quota(model: str, channel_type: int, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, channel_type) * pricing.group_ratio("default")
    completion_ratio = pricing.completion_ratio(model, channel_type)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


# --------------------------------------------------------------------------- Zhipu


def test_zhipu_chat(server: DaphneServer, zhipu_world: World, glm: FakeZhipu) -> None:
    client = sdk(server, zhipu_world)

    raw = client.chat.completions.with_raw_response.create(
        model=ZHIPU_MODEL, messages=MESSAGES, temperature=2, top_p=1
    )
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == glm.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 8)
    sent = glm.last_request
    assert sent.claims is not None and sent.claims["api_key"] == ZHIPU_KEY.split(".")[0]
    assert sent.json is not None
    assert (sent.json["temperature"], sent.json["top_p"]) == (1.0, 0.99)
    expected = quota(ZHIPU_MODEL, ChannelType.ZHIPU, 12, 8)
    assert expected > 0
    assert_billed(zhipu_world, {request_id_of(raw.headers): expected})


def test_zhipu_stream_with_and_without_usage(
    server: DaphneServer, zhipu_world: World, glm: FakeZhipu
) -> None:
    client = sdk(server, zhipu_world)

    plain = client.chat.completions.with_raw_response.create(
        model=ZHIPU_MODEL, messages=MESSAGES, stream=True
    )
    chunks = list(plain.parse())
    with_usage = client.chat.completions.with_raw_response.create(
        model=ZHIPU_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    usage_chunks = list(with_usage.parse())

    assert all(chunk.usage is None for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == glm.reply
    assert chunks[-1].choices[0].finish_reason == "stop"
    (last,) = [c for c in usage_chunks if c.usage is not None]
    assert last is usage_chunks[-1] and last.choices == []
    assert last.usage is not None and last.usage.total_tokens == 20
    # Both tokens of the two requests are the same cached JWT.
    assert len({r.headers["authorization"] for r in glm.requests}) == 1
    expected = quota(ZHIPU_MODEL, ChannelType.ZHIPU, 12, 8)
    assert_billed(
        zhipu_world,
        {request_id_of(plain.headers): expected, request_id_of(with_usage.headers): expected},
    )


def test_zhipu_tool_call_and_embeddings(
    server: DaphneServer, zhipu_world: World, glm: FakeZhipu
) -> None:
    client = sdk(server, zhipu_world)
    glm.scenario = "tool_call"

    raw = client.chat.completions.with_raw_response.create(
        model=ZHIPU_MODEL, messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    choice = raw.parse().choices[0]
    embedded = client.embeddings.with_raw_response.create(
        model="embedding-3", input=["天气", "很好"]
    )

    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == json.loads(glm.tool_arguments)
    vectors = embedded.parse()
    assert [item.index for item in vectors.data] == [0, 1]
    # The SDK asked for base64 (its default); Zhipu sent floats and the relay encoded them.
    assert vectors.data[1].embedding == pytest.approx(zhipu_vector("很好", 8), abs=1e-6)
    assert glm.last_request.json == {"model": "embedding-3", "input": ["天气", "很好"]}
    assert_billed(
        zhipu_world,
        {
            request_id_of(raw.headers): quota(ZHIPU_MODEL, ChannelType.ZHIPU, 12, 8),
            request_id_of(embedded.headers): quota("embedding-3", ChannelType.ZHIPU, 12, 0),
        },
    )


def test_zhipu_v3_stream(server: DaphneServer, zhipu_world: World, glm: FakeZhipu) -> None:
    client = sdk(server, zhipu_world)

    raw = client.chat.completions.with_raw_response.create(
        model="chatglm_turbo", messages=MESSAGES, stream=True
    )
    chunks = list(raw.parse())

    assert glm.last_request.path == "/api/paas/v3/model-api/chatglm_turbo/sse-invoke"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == glm.reply + "\n第二行"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert_billed(
        zhipu_world, {request_id_of(raw.headers): quota("chatglm_turbo", ChannelType.ZHIPU, 12, 8)}
    )


def test_zhipu_rate_limit(server: DaphneServer, zhipu_world: World, glm: FakeZhipu) -> None:
    glm.fail_times(1, "error_429")

    with pytest.raises(openai.RateLimitError) as caught:
        sdk(server, zhipu_world).chat.completions.create(model=ZHIPU_MODEL, messages=MESSAGES)

    assert caught.value.status_code == 429
    assert isinstance(caught.value.body, dict)
    assert "并发数过高" in caught.value.body["message"]


# --------------------------------------------------------------------------- Baidu


def test_baidu_chat_and_stream(server: DaphneServer, baidu_world: World, ernie: FakeBaidu) -> None:
    client = sdk(server, baidu_world)

    raw = client.chat.completions.with_raw_response.create(
        model=BAIDU_MODEL,
        messages=[{"role": "system", "content": "简短回答。"}, *MESSAGES],
        temperature=0,
    )
    completion = raw.parse()
    streamed = client.chat.completions.with_raw_response.create(
        model=BAIDU_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(streamed.parse())

    assert completion.choices[0].message.content == ernie.reply
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (10, 6)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ernie.reply
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0].usage is not None
    assert usage_chunks[0].usage.completion_tokens == 6
    first = ernie.model_requests[0]
    assert first.json is not None
    assert first.json["system"] == "简短回答。"
    assert first.json["temperature"] == 0.01
    # The server fetched its access token once and used it for both calls.
    assert {r.query["access_token"] for r in ernie.model_requests} <= set(ernie.issued_tokens)
    assert len({r.query["access_token"] for r in ernie.model_requests}) == 1
    expected = quota(BAIDU_MODEL, ChannelType.BAIDU, 10, 6)
    assert expected > 0
    assert_billed(
        baidu_world,
        {request_id_of(raw.headers): expected, request_id_of(streamed.headers): expected},
    )


def test_baidu_function_call_and_embeddings(
    server: DaphneServer, baidu_world: World, ernie: FakeBaidu
) -> None:
    client = sdk(server, baidu_world)
    ernie.scenario = "function_call"

    raw = client.chat.completions.with_raw_response.create(
        model=BAIDU_MODEL, messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    choice = raw.parse().choices[0]
    embedded = client.embeddings.with_raw_response.create(
        model="Embedding-V1", input=["今天", "天气"], encoding_format="base64"
    )

    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == "get_weather"
    vectors = embedded.parse()
    raw_vector = vectors.data[1].embedding
    if isinstance(raw_vector, str):  # older SDKs hand base64 back undecoded
        raw_vector = list(struct.unpack("<8f", base64.b64decode(raw_vector)))
    assert raw_vector == pytest.approx(baidu_vector("天气"), abs=1e-6)
    assert_billed(
        baidu_world,
        {
            request_id_of(raw.headers): quota(BAIDU_MODEL, ChannelType.BAIDU, 10, 6),
            request_id_of(embedded.headers): quota("Embedding-V1", ChannelType.BAIDU, 10, 0),
        },
    )


def test_baidu_concurrent_requests_share_one_token_exchange(
    server: DaphneServer, ernie: FakeBaidu, transactional_db: None
) -> None:
    # A key the server has never seen: its cache is cold for this channel.
    ernie.client_id, ernie.client_secret = "cold-ak", "cold-sk"
    world = make_world(server, ChannelType.BAIDU, ernie.base_url, ernie.key, BAIDU_MODEL)
    ernie.reset()
    ernie.token_delay = 0.3
    client = sdk(server, world)
    request_ids: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        raw = client.chat.completions.with_raw_response.create(model=BAIDU_MODEL, messages=MESSAGES)
        with lock:
            request_ids.append(request_id_of(raw.headers))

    try:
        threads = [threading.Thread(target=ask) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        ernie.token_delay = 0.0
        ernie.client_id, ernie.client_secret = "e2e-ak", "e2e-sk"

    assert len(request_ids) == 8
    assert ernie.token_requests == 1
    expected = quota(BAIDU_MODEL, ChannelType.BAIDU, 10, 6)
    assert_billed(world, dict.fromkeys(request_ids, expected))


def test_baidu_revoked_token_is_replaced(
    server: DaphneServer, baidu_world: World, ernie: FakeBaidu
) -> None:
    client = sdk(server, baidu_world)
    ok = client.chat.completions.with_raw_response.create(model=BAIDU_MODEL, messages=MESSAGES)
    ernie.revoke_tokens()

    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=BAIDU_MODEL, messages=MESSAGES)
    again = client.chat.completions.with_raw_response.create(model=BAIDU_MODEL, messages=MESSAGES)

    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == 110
    assert again.parse().choices[0].message.content == ernie.reply
    expected = quota(BAIDU_MODEL, ChannelType.BAIDU, 10, 6)
    assert_billed(
        baidu_world, {request_id_of(ok.headers): expected, request_id_of(again.headers): expected}
    )
