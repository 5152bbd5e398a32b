"""`/v1/responses` and `/v1/rerank`: the pieces on fixtures, then the relay against
FakeResponses standing in for OpenAI, Azure, Cohere, Jina and SiliconFlow."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from billing import pricing
from billing.models import ApiKey, Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from oneapi import caching
from oneapi.options import set_option, snapshot
from relay.adaptors import adaptor_for
from relay.adaptors.azure import responses_url
from relay.adaptors.base import Attempt, OpenAIBody
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.http import Request
from relay.inbound import rerank, responses
from relay.modes import RelayMode
from relay.tokens import count_text_tokens
from tests.factories import make_channel
from tests.fakes.responses_upstream import FakeResponses, word_count
from tests.relay.conftest import World

pytestmark = pytest.mark.django_db

T = ChannelType
KEY = "sk-upstream"
MODEL = "gpt-4o"  # served only by the channels made here, not by the world's channel
ASK = {"model": MODEL, "input": "Hello there"}
COHERE_MODEL = "rerank-english-v3.0"
JINA_MODEL = "jina-reranker-v2-base-multilingual"
SF_MODEL = "BAAI/bge-reranker-v2-m3"
RERANK_RATIOS = {COHERE_MODEL: 1, JINA_MODEL: 0.01, SF_MODEL: 0.045}
QUERY = "capital of France"
DOCUMENTS: list[Any] = [
    "Berlin is the capital of Germany.",
    {"text": "Paris is the capital of France."},
    "France borders Spain.",
]


def make_attempt(
    channel_type: int,
    mode: RelayMode,
    *,
    model: str = MODEL,
    base_url: str = "https://upstream.example",
    config: dict[str, Any] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=1,
        type=channel_type,
        name="test",
        key=KEY,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(model,),
        model_mapping={},
        config=config or {},
        system_prompt="",
        other="",
    )
    request = Request("POST", mode.upstream_path, b"", {}, b"{}", "127.0.0.1", "test-request")
    return Attempt(channel, mode, model, False, request)


def build(attempt: Attempt, payload: dict[str, Any]) -> Any:
    raw = orjson.dumps(payload)
    return adaptor_for(attempt.channel.type).build_request(attempt, OpenAIBody(raw, dict(payload)))


def event_blocks(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each block of a Responses stream; every block must be exactly an
    `event:` line and a `data:` line naming the same type."""
    blocks = []
    for block in body.decode().split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: "), block
        data = json.loads(data_line.removeprefix("data: "))
        blocks.append((event_line.removeprefix("event: "), data))
    return blocks


def logs_of(world: World) -> list[Log]:
    world.refresh()
    return list(Log.objects.filter(user_id=world.user.pk).order_by("id"))


def text_quota(model: str, channel_type: int, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, channel_type) * pricing.group_ratio("default")
    return pricing.text_quota(
        prompt, completion, ratio, pricing.completion_ratio(model, channel_type)
    )


def restrict_key(world: World, models: str) -> None:
    ApiKey.objects.filter(pk=world.key.pk).update(models=models)
    caching.invalidate(caching.KEY, world.key.key)
    world.runtime.flush()


# ====================================================================== pieces: Responses


def test_the_stream_translator_forwards_blocks_verbatim_and_keeps_the_usage() -> None:
    stream = responses.ResponsesStream()
    lines = [
        b"event: response.created",
        b'data: {"type":"response.created","response":{"usage":null}}',
        b"",
        b": keep-alive",
        b"",
        b"event: response.output_text.delta",
        b'data: {"type":"response.output_text.delta","delta":"Hi"}',
        b"",
        b"event: response.completed",
        b'data:{"type":"response.completed","response":{"usage":{"input_tokens":3,"output_tokens":1}}}',
    ]
    frames = [frame for frame in map(stream.accept, lines) if frame is not None]
    frames.append(stream.flush())  # the upstream ended without its blank line

    assert frames == [
        b'event: response.created\ndata: {"type":"response.created","response":{"usage":null}}\n\n',
        b": keep-alive\n\n",
        b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
        b'"delta":"Hi"}\n\n',
        b'event: response.completed\ndata:{"type":"response.completed","response":{"usage":'
        b'{"input_tokens":3,"output_tokens":1}}}\n\n',
    ]
    assert stream.usage == {"input_tokens": 3, "output_tokens": 1}
    assert stream.generated_text == "Hi"
    assert stream.saw_done
    assert stream.flush() is None


def test_the_stream_translator_collects_every_kind_of_generated_text() -> None:
    stream = responses.ResponsesStream()
    for kind, delta in [
        ("response.output_text.delta", "a"),
        ("response.function_call_arguments.delta", "{}"),
        ("response.reasoning_summary_text.delta", "b"),
        ("response.output_text.done", "ignored"),
    ]:
        stream.accept(b"data: " + orjson.dumps({"type": kind, "delta": delta}))
    stream.accept(b'data: {"type":"error","code":"server_error","message":"boom"}')

    assert stream.generated_text == "a{}b"
    assert stream.usage is None
    assert stream.upstream_error == {"type": "error", "code": "server_error", "message": "boom"}


def test_prompt_count_covers_instructions_items_and_tools(world: World) -> None:
    payload = {
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        ],
        "tools": [{"type": "function", "name": "weather", "parameters": {}}],
    }
    tools = orjson.dumps(payload["tools"]).decode()
    texts = ("Be brief.", "Hi", "sunny", tools)
    expected = sum(count_text_tokens(text, MODEL) for text in texts) + 3  # 3 per message
    assert responses.count_prompt(payload, MODEL, snapshot()) == expected
    assert responses.count_prompt({"input": "Hello there"}, MODEL, snapshot()) == (
        count_text_tokens("Hello there", MODEL)
    )


def test_output_text_of_an_answer() -> None:
    answer = {
        "output": [
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "think "}]},
            {"type": "message", "content": [{"type": "output_text", "text": "Hi"}]},
            {"type": "function_call", "name": "f", "arguments": '{"a":1}'},
        ]
    }
    assert responses.output_text(answer) == 'think Hi{"a":1}'


@pytest.mark.parametrize(
    ("channel_type", "url"),
    [
        (T.OPENAI, "https://upstream.example/v1/responses"),
        (T.OPENROUTER, "https://upstream.example/v1/responses"),
        (T.XAI, "https://upstream.example/v1/responses"),
        (T.CUSTOM, "https://upstream.example/v1/responses"),
        (T.OPENAI_COMPATIBLE, "https://upstream.example/responses"),
    ],
)
def test_responses_urls_of_the_openai_family(channel_type: int, url: str) -> None:
    call = build(make_attempt(channel_type, RelayMode.RESPONSES), ASK)
    assert call.url == url
    assert call.content == orjson.dumps(ASK)


@pytest.mark.parametrize("channel_type", [T.DEEPSEEK, T.GROQ, T.MOONSHOT, T.SILICONFLOW])
def test_vendors_without_responses_refuse_it(channel_type: int) -> None:
    with pytest.raises(RelayError) as refused:
        build(make_attempt(channel_type, RelayMode.RESPONSES), ASK)
    assert (refused.value.status, refused.value.code) == (400, "unsupported_mode")
    assert "/v1/responses" in refused.value.message


@pytest.mark.parametrize(
    ("base", "config", "url"),
    [
        ("https://r.openai.azure.com", {}, "https://r.openai.azure.com/openai/v1/responses?api-version=preview"),
        ("https://r.openai.azure.com/openai/v1", {"api_version": "latest"}, "https://r.openai.azure.com/openai/v1/responses?api-version=latest"),
        ("https://r.openai.azure.com", {"api_version": "2024-10-21"}, "https://r.openai.azure.com/openai/v1/responses?api-version=preview"),
        ("https://r.openai.azure.com/openai", {"api_version": "2025-04-01-preview"}, "https://r.openai.azure.com/openai/responses?api-version=2025-04-01-preview"),
        ("https://r.openai.azure.com", {"api_version": "2025-01-01-preview"}, "https://r.openai.azure.com/openai/v1/responses?api-version=preview"),
    ],
)  # fmt: skip
def test_azure_responses_urls(base: str, config: dict[str, Any], url: str) -> None:
    assert (
        responses_url(make_attempt(T.AZURE, RelayMode.RESPONSES, base_url=base, config=config))
        == url
    )


def test_azure_names_the_deployment_in_the_body() -> None:
    attempt = make_attempt(T.AZURE, RelayMode.RESPONSES, model="gpt-4.1-mini")
    call = build(attempt, {"model": "gpt-4.1-mini", "input": "Hi", "stream_options": {}})
    assert orjson.loads(call.content) == {
        "model": "gpt-41-mini",
        "input": "Hi",
        "stream_options": {},
    }
    assert call.headers["api-key"] == KEY


# ====================================================================== pieces: rerank


@pytest.mark.parametrize(
    ("channel_type", "base", "url"),
    [
        (T.COHERE, "https://api.cohere.ai", "https://api.cohere.ai/v1/rerank"),
        (T.SILICONFLOW, "https://api.siliconflow.cn", "https://api.siliconflow.cn/v1/rerank"),
        (T.CUSTOM, "https://api.jina.ai", "https://api.jina.ai/v1/rerank"),
        (T.OPENAI_COMPATIBLE, "https://llm.example/v1", "https://llm.example/v1/rerank"),
    ],
)
def test_rerank_urls(channel_type: int, base: str, url: str) -> None:
    payload = {"model": "m", "query": "q", "documents": ["d"]}
    call = build(make_attempt(channel_type, RelayMode.RERANK, model="m", base_url=base), payload)
    assert call.url == url
    assert call.content == orjson.dumps(payload)
    assert call.headers.get("Authorization", call.headers.get("authorization")) == f"Bearer {KEY}"


@pytest.mark.parametrize("channel_type", [T.OPENAI, T.API2D, T.OPENROUTER, T.DEEPSEEK])
def test_types_without_rerank_refuse_it(channel_type: int) -> None:
    with pytest.raises(RelayError) as refused:
        build(make_attempt(channel_type, RelayMode.RERANK), {"model": MODEL})
    assert (refused.value.status, refused.value.code) == (400, "unsupported_mode")


def test_cohere_chat_still_converts_and_rerank_passes_through() -> None:
    cohere = adaptor_for(T.COHERE)
    attempt = make_attempt(T.COHERE, RelayMode.RERANK, model=COHERE_MODEL)
    raw = b'{"results": [{"index": 0, "relevance_score": 0.5}], "meta": {}}'
    assert cohere.translate_response(attempt, raw) is raw
    chat = make_attempt(T.COHERE, RelayMode.CHAT, model="command-r")
    assert orjson.loads(cohere.translate_response(chat, b'{"text": "Hi"}'))["object"] == (
        "chat.completion"
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"meta": {"billed_units": {"search_units": 2}}}, rerank.RerankBill(1000, 0, 2)),
        ({"usage": {"total_tokens": 40}}, rerank.RerankBill(20, 40)),
        ({"usage": {"prompt_tokens": 30, "total_tokens": 40}}, rerank.RerankBill(15, 30)),
        (
            {"meta": {"billed_units": {"input_tokens": 0}, "tokens": {"input_tokens": 9}}},
            rerank.RerankBill(5, 9),
        ),
        ({"meta": {"api_version": {"version": "1"}}}, rerank.RerankBill(6, 11)),
        ({"usage": {"total_tokens": 0}}, rerank.RerankBill(0, 0)),
    ],
)  # fmt: skip
def test_rerank_bills(answer: dict[str, Any], expected: rerank.RerankBill) -> None:
    assert rerank.bill_of(answer, 11, 0.5) == expected


def test_a_search_unit_bill_reports_its_units() -> None:
    bill = rerank.bill_of({"meta": {"billed_units": {"search_units": 1}}}, 11, 0.25)
    assert bill.usage == {"prompt_tokens": 0, "total_tokens": 0, "search_units": 1}
    assert bill.quota == 250


# ====================================================================== the relay: Responses


@pytest.fixture
def fake() -> Iterator[FakeResponses]:
    with FakeResponses(api_key=KEY) as upstream:
        yield upstream


@pytest.fixture
def channel(world: World, fake: FakeResponses) -> Channel:
    return make_channel(base_url=fake.base_url, models=f"{MODEL},my-alias")


def test_a_response_is_relayed_as_is_and_billed_from_its_usage(
    world: World, channel: Channel, fake: FakeResponses
) -> None:
    body = b'{"model": "gpt-4o",  "input": "Hello there", "vendor_extra": [1]}'
    result = world.client.post("/v1/responses", body=body)

    assert result.status == 200, result.body
    sent = fake.last_request
    assert (sent.path, sent.body) == ("/v1/responses", body)  # byte for byte
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    answer = result.json()
    assert answer["object"] == "response"
    assert answer["output"][0]["content"][0]["text"] == fake.reply
    assert answer["usage"]["input_tokens"] == 12
    [log] = logs_of(world)
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (12, 7, MODEL)
    assert not log.is_stream
    assert log.channel_id == channel.pk
    expected = text_quota(MODEL, T.OPENAI, 12, 7)
    assert log.quota == expected == world.user.used_quota == world.key.used_quota
    assert channel.__class__.objects.get(pk=channel.pk).used_quota == expected


def test_a_stream_forwards_every_event_line_and_bills_the_completed_usage(
    world: World, channel: Channel, fake: FakeResponses
) -> None:
    result = world.client.post("/v1/responses", {**ASK, "stream": True})

    assert result.status == 200, result.body
    assert result.headers["content-type"] == "text/event-stream"
    assert fake.last_request.json == {**ASK, "stream": True}  # no stream_options added
    blocks = event_blocks(result.body)
    names = [name for name, _ in blocks]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(name == data["type"] for name, data in blocks)
    assert [data["sequence_number"] for _, data in blocks] == list(range(len(blocks)))
    text = "".join(d["delta"] for n, d in blocks if n == "response.output_text.delta")
    assert text == fake.reply
    assert b"[DONE]" not in result.body
    assert blocks[-1][1]["response"]["usage"]["output_tokens"] == 7
    [log] = logs_of(world)
    assert (log.prompt_tokens, log.completion_tokens, log.is_stream) == (12, 7, True)
    assert log.quota == text_quota(MODEL, T.OPENAI, 12, 7) == world.user.used_quota


def test_without_usage_the_prompt_and_the_deltas_are_counted(
    world: World, channel: Channel, fake: FakeResponses
) -> None:
    fake.scenario = "no_usage"
    world.client.post("/v1/responses", {**ASK, "stream": True})
    plain = world.client.post("/v1/responses", ASK)

    assert plain.status == 200, plain.body
    prompt = count_text_tokens("Hello there", MODEL)
    completion = count_text_tokens(fake.reply, MODEL)
    logs = logs_of(world)
    assert [(log.prompt_tokens, log.completion_tokens) for log in logs] == [
        (prompt, completion)
    ] * 2
    expected = text_quota(MODEL, T.OPENAI, prompt, completion)
    assert [log.quota for log in logs] == [expected, expected]
    assert world.user.used_quota == 2 * expected


def test_a_stream_cut_upstream_ends_with_an_error_event_and_bills_what_came(
    world: World, channel: Channel, fake: FakeResponses
) -> None:
    fake.scenario = "drop_mid_stream"
    result = world.client.post("/v1/responses", {**ASK, "stream": True})

    blocks = event_blocks(result.body)
    assert blocks[-1][0] == "error"
    assert blocks[-1][1]["code"] == "stream_interrupted"
    deltas = [d["delta"] for n, d in blocks if n == "response.output_text.delta"]
    assert len(deltas) == 2
    [log] = logs_of(world)
    assert log.completion_tokens == count_text_tokens("".join(deltas), MODEL)
    assert log.prompt_tokens == count_text_tokens("Hello there", MODEL)


def test_model_mapping_and_the_forced_system_prompt(
    world: World, channel: Channel, fake: FakeResponses
) -> None:
    Channel.objects.filter(pk=channel.pk).update(
        model_mapping=json.dumps({"my-alias": MODEL}), system_prompt="Answer in French."
    )
    caching.invalidate(caching.CHANNELS)

    result = world.client.post("/v1/responses", {"model": "my-alias", "input": "Hi"})

    assert result.status == 200, result.body
    assert fake.last_request.json == {
        "model": MODEL,
        "input": "Hi",
        "instructions": "Answer in French.",
    }
    [log] = logs_of(world)
    assert (log.model_name, log.system_prompt_reset) == (MODEL, True)
    assert log.quota == text_quota(MODEL, T.OPENAI, 12, 7)


@pytest.mark.parametrize(
    ("channel_type", "name"), [(T.ANTHROPIC, "Anthropic (14)"), (T.DEEPSEEK, "DeepSeek (36)")]
)
def test_a_channel_type_without_responses_is_a_400_naming_it(
    world: World, fake: FakeResponses, channel_type: int, name: str
) -> None:
    make_channel(type=channel_type, base_url=fake.base_url, models=MODEL)

    result = world.client.post("/v1/responses", ASK)

    assert result.status == 400, result.body
    error = result.json()["error"]
    assert error["code"] == "unsupported_mode"
    assert f"channel type {name} does not support /v1/responses" in error["message"]
    assert fake.requests == []
    assert logs_of(world) == []
    assert world.user.used_quota == 0


def test_an_unsupported_channel_fails_over_to_one_that_serves_it(
    world: World, channel: Channel, fake: FakeResponses
) -> None:
    set_option("RetryTimes", "1")
    make_channel(type=T.ANTHROPIC, base_url=fake.base_url, models=MODEL, priority=10)

    result = world.client.post("/v1/responses", ASK)

    assert result.status == 200, result.body
    [log] = logs_of(world)
    assert log.channel_id == channel.pk


@pytest.mark.parametrize(
    ("config", "path", "version"),
    [
        ({}, "/openai/v1/responses", "preview"),
        ({"api_version": "2025-04-01-preview"}, "/openai/responses", "2025-04-01-preview"),
    ],
)
def test_azure_serves_responses(
    world: World, fake: FakeResponses, config: dict[str, Any], path: str, version: str
) -> None:
    make_channel(type=T.AZURE, base_url=fake.base_url, models="gpt-4.1", config=json.dumps(config))

    result = world.client.post("/v1/responses", {"model": "gpt-4.1", "input": "Hi", "stream": True})

    assert result.status == 200, result.body
    sent = fake.last_request
    assert (sent.path, sent.query["api-version"], sent.json["model"]) == (path, version, "gpt-41")
    assert event_blocks(result.body)[-1][0] == "response.completed"
    [log] = logs_of(world)
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (12, 7, "gpt-4.1")


def test_upstream_errors_are_relayed_and_nothing_is_billed(
    world: World, channel: Channel, fake: FakeResponses
) -> None:
    fake.scenario = "error_429"
    result = world.client.post("/v1/responses", ASK)

    assert result.status == 429
    assert "fake upstream error 429" in result.json()["error"]["message"]
    assert logs_of(world) == []
    assert world.runtime.ledger.user_available(world.user.id) == world.user.quota


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_stored_responses_are_not_implemented(world: World, method: str) -> None:
    result = world.client.request(method, "/v1/responses/resp_123")
    assert result.status == 501
    assert result.json()["error"]["code"] == "api_not_implemented"
    assert world.client.post("/v1/responses/resp_123/cancel").status == 501


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"input": "Hi"}, "model name not specified"),
        ({**ASK, "max_output_tokens": -1}, "max_output_tokens is invalid"),
    ],
)
def test_invalid_responses_requests(world: World, payload: dict[str, Any], message: str) -> None:
    result = world.client.post("/v1/responses", payload)
    assert result.status == 400
    assert result.json()["error"]["message"].startswith(message)


def test_the_key_model_list_applies_to_both_endpoints(world: World, channel: Channel) -> None:
    restrict_key(world, "gpt-4o-mini")
    for path, payload in [
        ("/v1/responses", ASK),
        ("/v1/rerank", {"model": COHERE_MODEL, "query": QUERY, "documents": DOCUMENTS}),
    ]:
        result = world.client.post(path, payload)
        assert result.status == 403
        assert "该令牌无权使用模型" in result.json()["error"]["message"]
    assert logs_of(world) == []


# ====================================================================== the relay: rerank


@pytest.fixture
def rerank_ratios(db: None) -> None:
    set_option("ModelRatio", json.dumps(RERANK_RATIOS))


def rerank_fake(style: str) -> FakeResponses:
    return FakeResponses(api_key=KEY, rerank_style=style).start()


@pytest.fixture
def cohere(world: World, rerank_ratios: None) -> Iterator[tuple[FakeResponses, Channel]]:
    upstream = rerank_fake("cohere")
    try:
        made = make_channel(
            type=T.COHERE,
            base_url=upstream.base_url,
            models=f"{COHERE_MODEL},alias",
            model_mapping=json.dumps({"alias": COHERE_MODEL}),
        )
        yield upstream, made
    finally:
        upstream.stop()


@pytest.fixture
def jina(world: World, rerank_ratios: None) -> Iterator[tuple[FakeResponses, Channel]]:
    upstream = rerank_fake("jina")
    try:
        yield upstream, make_channel(type=T.CUSTOM, base_url=upstream.base_url, models=JINA_MODEL)
    finally:
        upstream.stop()


@pytest.fixture
def siliconflow(world: World, rerank_ratios: None) -> Iterator[tuple[FakeResponses, Channel]]:
    upstream = rerank_fake("siliconflow")
    try:
        made = make_channel(type=T.SILICONFLOW, base_url=upstream.base_url, models=SF_MODEL)
        yield upstream, made
    finally:
        upstream.stop()


def rerank_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "query": QUERY, "documents": DOCUMENTS, **extra}


def fake_tokens() -> int:
    texts = [QUERY, *(d if isinstance(d, str) else d["text"] for d in DOCUMENTS)]
    return sum(word_count(text) for text in texts)


def test_cohere_rerank_is_billed_per_search_unit(
    world: World, cohere: tuple[FakeResponses, Channel]
) -> None:
    upstream, _ = cohere
    result = world.client.post("/v1/rerank", rerank_body("alias", top_n=2))

    assert result.status == 200, result.body
    sent = upstream.last_request
    assert (sent.path, sent.headers["authorization"]) == ("/v1/rerank", f"Bearer {KEY}")
    assert sent.json == rerank_body(COHERE_MODEL, top_n=2)  # the mapped model
    answer = result.json()
    assert [r["index"] for r in answer["results"]] == [1, 0]
    assert answer["results"][0]["relevance_score"] == 1.0
    assert answer["usage"] == {"prompt_tokens": 0, "total_tokens": 0, "search_units": 1}
    assert answer["meta"]["billed_units"] == {"search_units": 1}
    assert answer["id"].startswith("rerank-")
    [log] = logs_of(world)
    assert log.model_name == COHERE_MODEL
    assert log.quota == 1000 == world.user.used_quota  # ratio 1: 1000 per search unit
    assert (log.prompt_tokens, log.completion_tokens) == (0, 0)
    assert "1 search units × 1000" in log.content


def test_jina_rerank_through_a_custom_channel_is_billed_per_token(
    world: World, jina: tuple[FakeResponses, Channel]
) -> None:
    upstream, _ = jina
    result = world.client.post("/v1/rerank", rerank_body(JINA_MODEL, return_documents=True))

    assert result.status == 200, result.body
    assert upstream.last_request.path == "/v1/rerank"
    answer = result.json()
    assert set(answer) == {"id", "results", "usage"}
    assert answer["results"][0] == {
        "index": 1,
        "relevance_score": 1.0,
        "document": {"text": "Paris is the capital of France."},
    }
    tokens = fake_tokens()
    assert answer["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    [log] = logs_of(world)
    assert (log.prompt_tokens, log.completion_tokens) == (tokens, 0)
    assert log.quota == math.ceil(tokens * 0.01) == world.user.used_quota


def test_siliconflow_rerank_gets_string_documents_and_bills_its_tokens(
    world: World, siliconflow: tuple[FakeResponses, Channel]
) -> None:
    upstream, _ = siliconflow
    result = world.client.post("/v1/rerank", rerank_body(SF_MODEL))

    assert result.status == 200, result.body
    sent = upstream.last_request.json
    assert sent["documents"] == [d if isinstance(d, str) else d["text"] for d in DOCUMENTS]
    tokens = fake_tokens()
    answer = result.json()
    assert answer["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert answer["meta"]["tokens"] == {"input_tokens": tokens, "output_tokens": 0}
    [log] = logs_of(world)
    assert log.quota == math.ceil(tokens * 0.045) == world.user.used_quota


def test_rerank_without_usage_counts_query_and_documents(
    world: World, jina: tuple[FakeResponses, Channel]
) -> None:
    upstream, _ = jina
    upstream.scenario = "no_usage"
    result = world.client.post("/v1/rerank", rerank_body(JINA_MODEL))

    assert result.status == 200, result.body
    texts = [QUERY, *(d if isinstance(d, str) else d["text"] for d in DOCUMENTS)]
    tokens = sum(count_text_tokens(text, JINA_MODEL) for text in texts)
    assert result.json()["usage"]["prompt_tokens"] == tokens
    [log] = logs_of(world)
    assert (log.prompt_tokens, log.quota) == (tokens, math.ceil(tokens * 0.01))


def test_rerank_through_an_openai_compatible_channel(world: World, rerank_ratios: None) -> None:
    with FakeResponses(api_key=KEY, rerank_style="jina") as upstream:
        make_channel(
            type=T.OPENAI_COMPATIBLE, base_url=upstream.base_url + "/v1", models=JINA_MODEL
        )
        result = world.client.post("/v1/rerank", rerank_body(JINA_MODEL))
        assert result.status == 200, result.body
        assert upstream.last_request.path == "/v1/rerank"
    assert len(logs_of(world)) == 1


def test_rerank_on_an_openai_channel_is_a_400_naming_it(world: World, rerank_ratios: None) -> None:
    make_channel(models=JINA_MODEL, base_url=world.upstream.base_url)
    result = world.client.post("/v1/rerank", rerank_body(JINA_MODEL))

    assert result.status == 400
    assert (
        "channel type OpenAI (1) does not support /v1/rerank" in result.json()["error"]["message"]
    )
    assert logs_of(world) == []


def test_rerank_upstream_failure_is_not_billed(
    world: World, cohere: tuple[FakeResponses, Channel]
) -> None:
    upstream, _ = cohere
    upstream.scenario = "error_500"
    result = world.client.post("/v1/rerank", rerank_body(COHERE_MODEL))

    assert result.status == 500
    assert logs_of(world) == []
    assert world.runtime.ledger.user_available(world.user.id) == world.user.quota


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"query": QUERY, "documents": DOCUMENTS}, "model"),
        ({"model": COHERE_MODEL, "documents": DOCUMENTS}, "query"),
        ({"model": COHERE_MODEL, "query": QUERY, "documents": []}, "documents"),
        ({"model": COHERE_MODEL, "query": QUERY, "documents": [1]}, "documents"),
        ({"model": COHERE_MODEL, "query": QUERY, "documents": ["a"], "top_n": 0}, "top_n"),
    ],
)
def test_invalid_rerank_requests(world: World, payload: dict[str, Any], param: str) -> None:
    result = world.client.post("/v1/rerank", payload)
    assert result.status == 400
    assert result.json()["error"]["param"] == param
