"""Anthropic, Gemini, PaLM, DeepL and AIProxy library channels through a real Daphne, driven
by the official `openai` SDK against the fake upstream of each family.

One Daphne and one fake of each family serve the module; each test has its own user, key
and channel (which also serves a probe model, so the test starts once the server's routing
table has it). Billing is checked on the rows the server's write-back thread updates: from
the upstream's token counts where it reports them, else from the relay's own counting.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
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
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini, gemini_vector
from tests.fakes.misc_upstreams import FakeAIProxyLibrary, FakeDeepL
from tests.fakes.palm_upstream import FakePaLM
from tests.integration.relay_setup import (
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLAUDE = "claude-3-5-sonnet-20241022"
ANTHROPIC_KEY = "sk-ant-e2e"
GEMINI = "gemini-1.5-flash"
GEMINI_EMBEDDING = "text-embedding-004"
GEMINI_KEY = "gemini-e2e"
PALM = "PaLM-2"
PALM_KEY = "palm-e2e"
DEEPL = "deepl-zh"
DEEPL_KEY = "deepl-e2e:fx"
LIBRARY_MODEL = "gpt-4o-mini"
LIBRARY_KEY = "ap-e2e"
LIBRARY_ID = "lib-e2e"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello there"}]
DEEPL_MESSAGES: list[Any] = [{"role": "user", "content": "Hello"}]


# ---------------------------------------------------------------------- processes


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("adaptors-e2e"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


@pytest.fixture(scope="module")
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def gemini() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=GEMINI_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def palm() -> Iterator[FakePaLM]:
    with FakePaLM(api_key=PALM_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def deepl() -> Iterator[FakeDeepL]:
    with FakeDeepL(api_key=DEEPL_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def library() -> Iterator[FakeAIProxyLibrary]:
    with FakeAIProxyLibrary(api_key=LIBRARY_KEY, library_id=LIBRARY_ID) as fake:
        yield fake


# ---------------------------------------------------------------------- helpers


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


def counted(model: str, messages: list[Any], reply: str) -> tuple[int, int]:
    """The relay's own (prompt, completion) counts when the upstream reports none."""
    snapshot = options.load_snapshot()
    return usage.count_messages(messages, model, snapshot), usage.count_text(reply, model, snapshot)


def request_id_of(headers: Any) -> str:
    request_id = headers["x-oneapi-request-id"]
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def chat_and_stream(
    client: openai.OpenAI, model: str, messages: list[Any] = MESSAGES
) -> tuple[Any, list[Any], str, str]:
    """(completion, stream chunks, request id of each) for one chat and one stream that asks
    for the usage chunk."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
    streamed = client.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=True, stream_options={"include_usage": True}
    )
    assert streamed.headers["content-type"].startswith("text/event-stream")
    stream_id = request_id_of(streamed.headers)
    return raw.parse(), list(streamed.parse()), request_id_of(raw.headers), stream_id


def error_message(error: openai.APIStatusError) -> str:
    """The relay's `error.message` (the SDK's own message prefixes the status)."""
    assert isinstance(error.body, dict), error.body
    return str(error.body["message"])


def streamed_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def usage_chunks(chunks: list[Any]) -> list[Any]:
    return [c for c in chunks if c.usage is not None]


def finish_reasons(chunks: list[Any]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def assert_counted_logs(world: World, prompt: int, completion: int) -> None:
    """Without upstream usage: each log carries the relay's counts, and its quota is the
    text price of its own counts."""
    logs = world.logs()
    assert logs
    for log in logs:
        ratio = pricing.model_ratio(log.model_name, world.channel.type)
        completion_ratio = pricing.completion_ratio(log.model_name, world.channel.type)
        assert log.prompt_tokens > 0 and log.completion_tokens > 0
        assert (log.prompt_tokens, log.completion_tokens) == (prompt, completion)
        assert log.quota == pricing.text_quota(
            log.prompt_tokens,
            log.completion_tokens,
            ratio * pricing.group_ratio("default"),
            completion_ratio,
        )


def assert_logs(world: World, model: str, tokens: tuple[int, int]) -> None:
    logs = world.logs()
    assert [log.is_stream for log in logs] == [False, True]
    assert {log.model_name for log in logs} == {model}
    assert {log.channel_id for log in logs} == {world.channel.pk}
    assert [(log.prompt_tokens, log.completion_tokens) for log in logs] == [tokens] * 2


# ---------------------------------------------------------------------- Anthropic


@pytest.fixture
def anthropic_world(make_world: WorldFactory, anthropic: FakeAnthropic) -> World:
    world = make_world(
        ChannelType.ANTHROPIC, CLAUDE, base_url=anthropic.base_url, key=ANTHROPIC_KEY
    )
    anthropic.reset()
    return world


def test_anthropic_chat_and_stream(
    server: DaphneServer, anthropic_world: World, anthropic: FakeAnthropic
) -> None:
    completion, chunks, chat_id, stream_id = chat_and_stream(sdk(server, anthropic_world), CLAUDE)

    assert completion.model == CLAUDE
    assert completion.choices[0].message.content == anthropic.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (13, 9)
    assert streamed_text(chunks) == anthropic.reply
    assert finish_reasons(chunks) == ["stop"]
    (usage_chunk,) = usage_chunks(chunks)
    assert usage_chunk is chunks[-1] and usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (13, 9)
    assert usage_chunk.usage.total_tokens == 22

    sent = anthropic.requests
    assert [r.path for r in sent] == ["/v1/messages"] * 2
    assert {r.headers["x-api-key"] for r in sent} == {ANTHROPIC_KEY}
    assert {r.headers["anthropic-version"] for r in sent} == {"2023-06-01"}
    assert [bool((r.json or {}).get("stream")) for r in sent] == [False, True]
    assert all(r.json is not None and r.json["max_tokens"] == 4096 for r in sent)
    assert all(r.json is not None and "stream_options" not in r.json for r in sent)

    expected = quota(CLAUDE, ChannelType.ANTHROPIC, 13, 9)
    assert_billed(anthropic_world, {chat_id: expected, stream_id: expected})
    assert_logs(anthropic_world, CLAUDE, (13, 9))


def test_anthropic_rate_limit_is_a_rate_limit_error_and_not_billed(
    server: DaphneServer, anthropic_world: World, anthropic: FakeAnthropic
) -> None:
    client = sdk(server, anthropic_world)
    anthropic.scenario = "error_429"
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=CLAUDE, messages=MESSAGES)
    finally:
        anthropic.scenario = "ok"

    assert caught.value.status_code == 429
    assert "per-minute rate limit" in error_message(caught.value)
    assert len(anthropic.requests) == 1  # one channel: no retry elsewhere
    # The next request succeeds on the same channel, and is the only thing billed.
    raw = client.chat.completions.with_raw_response.create(model=CLAUDE, messages=MESSAGES)
    assert raw.parse().choices[0].message.content == anthropic.reply
    expected = quota(CLAUDE, ChannelType.ANTHROPIC, 13, 9)
    assert_billed(anthropic_world, {request_id_of(raw.headers): expected})


# ---------------------------------------------------------------------- Gemini


@pytest.fixture
def gemini_world(make_world: WorldFactory, gemini: FakeGemini) -> World:
    world = make_world(
        ChannelType.GEMINI,
        f"{GEMINI},{GEMINI_EMBEDDING}",
        base_url=gemini.base_url,
        key=GEMINI_KEY,
    )
    gemini.reset()
    return world


def test_gemini_chat_and_stream(
    server: DaphneServer, gemini_world: World, gemini: FakeGemini
) -> None:
    completion, chunks, chat_id, stream_id = chat_and_stream(sdk(server, gemini_world), GEMINI)

    assert completion.model == GEMINI
    assert completion.choices[0].message.content == gemini.reply
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    assert streamed_text(chunks) == gemini.reply
    assert finish_reasons(chunks) == ["stop"]
    (usage_chunk,) = usage_chunks(chunks)
    assert usage_chunk is chunks[-1] and usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (11, 7)
    assert usage_chunk.usage.total_tokens == 18

    sent = gemini.requests
    assert [(r.version, r.model, r.action) for r in sent] == [
        ("v1", GEMINI, "generateContent"),
        ("v1", GEMINI, "streamGenerateContent"),
    ]
    assert sent[1].query == {"alt": "sse"}
    assert {r.headers["x-goog-api-key"] for r in sent} == {GEMINI_KEY}
    assert all("authorization" not in r.headers for r in sent)

    expected = quota(GEMINI, ChannelType.GEMINI, 11, 7)
    assert_billed(gemini_world, {chat_id: expected, stream_id: expected})
    assert_logs(gemini_world, GEMINI, (11, 7))


def test_gemini_embeddings_in_the_sdks_base64(
    server: DaphneServer, gemini_world: World, gemini: FakeGemini
) -> None:
    inputs = ["hello world", "second text"]
    raw = sdk(server, gemini_world).embeddings.with_raw_response.create(
        model=GEMINI_EMBEDDING, input=inputs
    )
    result = raw.parse()

    assert [item.index for item in result.data] == [0, 1]
    for item, text in zip(result.data, inputs, strict=True):
        assert item.embedding == pytest.approx(gemini_vector(text, gemini.embedding_dimensions))
    sent = gemini.last_request
    assert (sent.version, sent.model, sent.action) == ("v1", GEMINI_EMBEDDING, "batchEmbedContents")
    assert sent.json is not None and len(sent.json["requests"]) == 2

    # Gemini counts no embedding tokens: the relay bills the input it counted.
    prompt = usage.count_input(inputs, GEMINI_EMBEDDING, options.load_snapshot())
    expected = quota(GEMINI_EMBEDDING, ChannelType.GEMINI, prompt, 0)
    assert_billed(gemini_world, {request_id_of(raw.headers): expected})
    (log,) = gemini_world.logs()
    assert log.prompt_tokens == prompt > 0 and log.completion_tokens == 0


def test_gemini_overloaded_stream_is_a_server_error_and_not_billed(
    server: DaphneServer, gemini_world: World, gemini: FakeGemini
) -> None:
    client = sdk(server, gemini_world)
    gemini.scenario = "error_503"
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(
                model=GEMINI,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
    finally:
        gemini.scenario = "ok"

    assert caught.value.status_code == 503
    assert "overloaded" in error_message(caught.value)
    raw = client.chat.completions.with_raw_response.create(model=GEMINI, messages=MESSAGES)
    assert raw.parse().choices[0].message.content == gemini.reply
    expected = quota(GEMINI, ChannelType.GEMINI, 11, 7)
    assert_billed(gemini_world, {request_id_of(raw.headers): expected})


# ---------------------------------------------------------------------- PaLM


@pytest.fixture
def palm_world(make_world: WorldFactory, palm: FakePaLM) -> World:
    world = make_world(ChannelType.PALM, PALM, base_url=palm.base_url, key=PALM_KEY)
    palm.reset()
    return world


def test_palm_chat_and_stream_billed_from_the_relays_counts(
    server: DaphneServer, palm_world: World, palm: FakePaLM
) -> None:
    completion, chunks, chat_id, stream_id = chat_and_stream(sdk(server, palm_world), PALM)

    assert completion.model == PALM
    assert completion.choices[0].message.content == palm.reply
    assert completion.choices[0].finish_reason == "stop"
    # PaLM cannot stream: the answer is replayed as one content chunk and a finish chunk.
    assert streamed_text(chunks) == palm.reply
    assert [c.choices[0].delta.content for c in chunks if c.choices] == [palm.reply, None]
    assert finish_reasons(chunks) == ["stop"]
    assert len({c.id for c in chunks}) == 1
    # PaLM counts no tokens: the client gets the counts it was billed by, in the answer and
    # in the usage chunk of the replayed stream.
    prompt, completion_tokens = counted(PALM, MESSAGES, palm.reply)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        prompt,
        completion_tokens,
    )
    [usage_chunk] = usage_chunks(chunks)
    assert usage_chunk.usage.total_tokens == prompt + completion_tokens

    sent = palm.requests
    assert [r.path for r in sent] == ["/v1beta2/models/chat-bison-001:generateMessage"] * 2
    assert {r.headers["x-goog-api-key"] for r in sent} == {PALM_KEY}
    assert [r.json for r in sent] == [
        {"prompt": {"messages": [{"author": "0", "content": "Hello there"}]}}
    ] * 2

    prompt, completion_tokens = counted(PALM, MESSAGES, palm.reply)
    expected = quota(PALM, ChannelType.PALM, prompt, completion_tokens)
    assert_billed(palm_world, {chat_id: expected, stream_id: expected})
    assert_logs(palm_world, PALM, (prompt, completion_tokens))
    assert_counted_logs(palm_world, prompt, completion_tokens)


def test_palm_rate_limit_is_a_rate_limit_error_and_not_billed(
    server: DaphneServer, palm_world: World, palm: FakePaLM
) -> None:
    client = sdk(server, palm_world)
    palm.scenario = "error_429"
    try:
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=PALM, messages=MESSAGES, stream=True)
    finally:
        palm.scenario = "ok"

    assert caught.value.status_code == 429
    assert "Resource has been exhausted" in error_message(caught.value)
    raw = client.chat.completions.with_raw_response.create(model=PALM, messages=MESSAGES)
    assert raw.parse().choices[0].message.content == palm.reply
    prompt, completion_tokens = counted(PALM, MESSAGES, palm.reply)
    expected = quota(PALM, ChannelType.PALM, prompt, completion_tokens)
    assert_billed(palm_world, {request_id_of(raw.headers): expected})


# ---------------------------------------------------------------------- DeepL


@pytest.fixture
def deepl_world(make_world: WorldFactory, deepl: FakeDeepL) -> World:
    world = make_world(ChannelType.DEEPL, DEEPL, base_url=deepl.base_url, key=DEEPL_KEY)
    deepl.reset()
    return world


def test_deepl_chat_and_stream_billed_by_characters(
    server: DaphneServer, deepl_world: World, deepl: FakeDeepL
) -> None:
    completion, chunks, chat_id, stream_id = chat_and_stream(
        sdk(server, deepl_world), DEEPL, DEEPL_MESSAGES
    )

    assert completion.model == DEEPL
    assert completion.choices[0].message.content == "你好"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    # DeepL's billed characters of "Hello" are the prompt; a translation has no completion.
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 0)
    assert streamed_text(chunks) == "你好"
    assert finish_reasons(chunks) == ["stop"]
    (usage_chunk,) = usage_chunks(chunks)
    assert usage_chunk is chunks[-1] and usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (5, 0)

    sent = deepl.requests
    assert [r.path for r in sent] == ["/v2/translate"] * 2
    assert {r.headers["authorization"] for r in sent} == {f"DeepL-Auth-Key {DEEPL_KEY}"}
    assert [r.json for r in sent] == [
        {"text": ["Hello"], "target_lang": "ZH", "show_billed_characters": True}
    ] * 2

    expected = quota(DEEPL, ChannelType.DEEPL, 5, 0)
    assert expected > 0
    assert_billed(deepl_world, {chat_id: expected, stream_id: expected})
    assert_logs(deepl_world, DEEPL, (5, 0))


def test_deepl_quota_exceeded_keeps_its_status_and_is_not_billed(
    server: DaphneServer, deepl_world: World, deepl: FakeDeepL
) -> None:
    client = sdk(server, deepl_world)
    deepl.scenario = "quota"
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=DEEPL, messages=DEEPL_MESSAGES)
    finally:
        deepl.scenario = "ok"

    assert caught.value.status_code == 456
    assert error_message(caught.value).startswith("Quota Exceeded")
    raw = client.chat.completions.with_raw_response.create(model=DEEPL, messages=DEEPL_MESSAGES)
    assert raw.parse().choices[0].message.content == "你好"
    assert_billed(deepl_world, {request_id_of(raw.headers): quota(DEEPL, ChannelType.DEEPL, 5, 0)})


# ---------------------------------------------------------------------- AIProxy library


@pytest.fixture
def library_world(make_world: WorldFactory, library: FakeAIProxyLibrary) -> World:
    world = make_world(
        ChannelType.AIPROXY_LIBRARY,
        LIBRARY_MODEL,
        base_url=library.base_url,
        key=LIBRARY_KEY,
        config=orjson.dumps({"library_id": LIBRARY_ID}).decode(),
    )
    library.reset()
    return world


def library_answer(library: FakeAIProxyLibrary) -> str:
    """The answer with its documents appended, as One API lists them."""
    listed = "\n".join(
        f"{i}. [{d['title']}]({d['url']})" for i, d in enumerate(library.documents, 1)
    )
    return f"{library.reply}\n\n参考文档：\n{listed}\n"


def test_aiproxy_library_chat_and_stream_billed_from_the_relays_counts(
    server: DaphneServer, library_world: World, library: FakeAIProxyLibrary
) -> None:
    completion, chunks, chat_id, stream_id = chat_and_stream(
        sdk(server, library_world), LIBRARY_MODEL
    )
    answer = library_answer(library)

    assert completion.model == LIBRARY_MODEL
    assert completion.choices[0].message.content == answer
    assert completion.choices[0].finish_reason == "stop"
    assert streamed_text(chunks) == answer
    assert finish_reasons(chunks) == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    # The library counts no tokens: the answer carries the counts it was billed by (a real
    # stream has no usage chunk to carry them).
    prompt, completion_tokens = counted(LIBRARY_MODEL, MESSAGES, answer)
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (
        prompt,
        completion_tokens,
    )
    assert usage_chunks(chunks) == []

    sent = library.requests
    assert [r.path for r in sent] == ["/api/library/ask"] * 2
    assert {r.headers["authorization"] for r in sent} == {f"Bearer {LIBRARY_KEY}"}
    assert [r.json for r in sent] == [
        {"model": LIBRARY_MODEL, "query": "Hello there", "libraryId": LIBRARY_ID, "stream": s}
        for s in (False, True)
    ]

    prompt, completion_tokens = counted(LIBRARY_MODEL, MESSAGES, answer)
    expected = quota(LIBRARY_MODEL, ChannelType.AIPROXY_LIBRARY, prompt, completion_tokens)
    assert_billed(library_world, {chat_id: expected, stream_id: expected})
    assert_logs(library_world, LIBRARY_MODEL, (prompt, completion_tokens))
    assert_counted_logs(library_world, prompt, completion_tokens)


def test_aiproxy_library_error_code_is_a_server_error_and_not_billed(
    server: DaphneServer, library_world: World, library: FakeAIProxyLibrary
) -> None:
    client = sdk(server, library_world)
    library.scenario = "error_code"
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=LIBRARY_MODEL, messages=MESSAGES)
    finally:
        library.scenario = "ok"

    assert caught.value.status_code == 500
    assert error_message(caught.value).startswith("知识库不存在")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == 2001
    raw = client.chat.completions.with_raw_response.create(model=LIBRARY_MODEL, messages=MESSAGES)
    answer = library_answer(library)
    assert raw.parse().choices[0].message.content == answer
    prompt, completion_tokens = counted(LIBRARY_MODEL, MESSAGES, answer)
    expected = quota(LIBRARY_MODEL, ChannelType.AIPROXY_LIBRARY, prompt, completion_tokens)
    assert_billed(library_world, {request_id_of(raw.headers): expected})
