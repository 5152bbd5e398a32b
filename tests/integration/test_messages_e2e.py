"""`/v1/messages` through a real Daphne, driven by the official `anthropic` SDK: natively on
an Anthropic channel (FakeAnthropic) and converted on an OpenAI one (FakeOpenAI).

One Daphne serves the module; each test has its own user, key and channels (see
`test_relay_e2e` for how a test waits until the server has loaded them). Billing is checked
exactly on the rows the server's write-back updates.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from relay.catalog import ChannelType
from tests.factories import make_channel
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    CHAT_MODEL,
    CHAT_QUOTA,
    REQUEST_ID_PATTERN,
    DaphneServer,
    World,
    assert_billed,
    make_world,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLAUDE = "claude-3-5-sonnet-20241022"
ANTHROPIC_KEY = "sk-ant-e2e"
HELLO: list[Any] = [{"role": "user", "content": "Hello there"}]
WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "The current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "location": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["location"],
    },
}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


@pytest.fixture(scope="module")
def claude_upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def server(
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DaphneServer]:
    with django_db_blocker.unblock():
        daphne = start_daphne(tmp_path_factory.mktemp("messages-e2e-daphne"))
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


@dataclasses.dataclass
class Setup:
    world: World  # its channel is the OpenAI one
    claude: Channel

    @property
    def on_claude(self) -> World:
        """The same user and key, billed on the Anthropic channel."""
        return dataclasses.replace(self.world, channel=self.claude)


@pytest.fixture
def setup(
    transactional_db: None,
    upstream: FakeOpenAI,
    claude_upstream: FakeAnthropic,
    server: DaphneServer,
) -> Setup:
    upstream.reset()
    claude_upstream.reset()
    # Made before the world: once the world's probe model is listed, both are loaded.
    claude = make_channel(
        type=ChannelType.ANTHROPIC,
        name=f"claude {secrets.token_hex(3)}",
        base_url=claude_upstream.base_url,
        key=ANTHROPIC_KEY,
        models=CLAUDE,
    )
    world = make_world(upstream, models=CHAT_MODEL)
    wait_for_routing(server.base_url, world)
    upstream.reset()
    return Setup(world, claude)


@pytest.fixture
def client(server: DaphneServer, setup: Setup) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.base_url, api_key=setup.world.api_key, max_retries=0)


def request_id_of(headers: Any) -> str:
    request_id = str(headers["x-oneapi-request-id"])
    assert headers["request-id"] == request_id
    assert re.fullmatch(REQUEST_ID_PATTERN, request_id), request_id
    return request_id


def claude_quota(prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(CLAUDE, ChannelType.ANTHROPIC) * pricing.group_ratio("default")
    completion_ratio = pricing.completion_ratio(CLAUDE, ChannelType.ANTHROPIC)
    return pricing.text_quota(prompt, completion, ratio, completion_ratio)


# ---------------------------------------------------------------------- Anthropic channel


def test_create_on_an_anthropic_channel_passes_the_body_through(
    client: anthropic.Anthropic, setup: Setup, claude_upstream: FakeAnthropic, upstream: FakeOpenAI
) -> None:
    raw = client.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, system="Be kind.", messages=HELLO
    )
    message = raw.parse()

    request_id = request_id_of(raw.headers)
    assert message._request_id == request_id
    assert message.type == "message"
    assert message.model == CLAUDE
    assert message.content[0].type == "text"
    assert message.content[0].text == claude_upstream.reply
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (13, 9)
    sent = claude_upstream.last_request
    assert sent.json == {
        "model": CLAUDE,
        "max_tokens": 100,
        "system": "Be kind.",
        "messages": HELLO,
    }
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert upstream.requests == []

    assert_billed(setup.on_claude, {request_id: claude_quota(13, 9)})
    (log,) = setup.world.logs()
    assert (log.model_name, log.prompt_tokens, log.completion_tokens) == (CLAUDE, 13, 9)
    assert log.channel_id == setup.claude.pk
    assert log.is_stream is False


def test_stream_with_tool_use_on_an_anthropic_channel(
    client: anthropic.Anthropic, setup: Setup, claude_upstream: FakeAnthropic
) -> None:
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    with client.messages.stream(
        model=CLAUDE, max_tokens=100, tools=[WEATHER_TOOL], messages=question
    ) as stream:
        texts = list(stream.text_stream)
        first = stream.get_final_message()
        first_id = request_id_of(stream.response.headers)

    assert "".join(texts) == claude_upstream.tool_preamble
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert call.type == "tool_use"
    assert call.name == "get_weather"
    assert call.input == claude_upstream.tool_input
    assert (first.usage.input_tokens, first.usage.output_tokens) == (13, 9)

    raw = client.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[
            *question,
            {"role": "assistant", "content": [block.model_dump() for block in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}],
            },
        ],
    )
    second = raw.parse()
    assert second.content[0].type == "text"
    assert second.content[0].text == claude_upstream.reply

    quota = claude_quota(13, 9)
    assert_billed(setup.on_claude, {first_id: quota, request_id_of(raw.headers): quota})
    assert [log.is_stream for log in setup.world.logs()] == [True, False]


def test_rate_limit_on_an_anthropic_channel_is_the_sdks_rate_limit_error(
    client: anthropic.Anthropic, setup: Setup, claude_upstream: FakeAnthropic
) -> None:
    claude_upstream.scenario = "error_429"

    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model=CLAUDE, max_tokens=100, messages=HELLO)

    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "per-minute rate limit" in body["error"]["message"]
    assert Log.objects.filter(user_id=setup.world.user.pk).count() == 0


# ---------------------------------------------------------------------- OpenAI channel


def test_create_with_tools_on_an_openai_channel_is_converted_both_ways(
    client: anthropic.Anthropic, setup: Setup, upstream: FakeOpenAI
) -> None:
    upstream.scenario = "tool_call"
    question: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]

    raw = client.messages.with_raw_response.create(
        model=CHAT_MODEL, max_tokens=100, tools=[WEATHER_TOOL], messages=question
    )
    first = raw.parse()

    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use"
    assert call.name == "get_weather"
    assert call.input == {"location": "Paris", "unit": "celsius"}
    assert (first.usage.input_tokens, first.usage.output_tokens) == (11, 7)
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["tools"][0]["function"]["parameters"] == WEATHER_TOOL["input_schema"]

    upstream.scenario = "ok"
    second_raw = client.messages.with_raw_response.create(
        model=CHAT_MODEL,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[
            *question,
            {"role": "assistant", "content": [call.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}],
            },
        ],
    )
    second = second_raw.parse()

    assert second.content[0].type == "text"
    assert second.content[0].text == upstream.reply
    sent = upstream.last_request.json
    assert sent is not None
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "18C"}
    assert sent["messages"][-2]["tool_calls"][0]["id"] == call.id

    assert_billed(
        setup.world,
        {request_id_of(raw.headers): CHAT_QUOTA, request_id_of(second_raw.headers): CHAT_QUOTA},
    )
    assert {log.model_name for log in setup.world.logs()} == {CHAT_MODEL}


def test_stream_on_an_openai_channel_is_anthropics_event_stream(
    client: anthropic.Anthropic, setup: Setup, upstream: FakeOpenAI
) -> None:
    with client.messages.stream(model=CHAT_MODEL, max_tokens=100, messages=HELLO) as stream:
        types = []
        texts = []
        for event in stream:
            types.append(event.type)
            if event.type == "text":
                texts.append(event.text)
        final = stream.get_final_message()
        request_id = request_id_of(stream.response.headers)

    assert "".join(texts) == upstream.reply
    assert types[0] == "message_start"
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text"
    assert final.content[0].text == upstream.reply
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 7)

    assert_billed(setup.world, {request_id: CHAT_QUOTA})
    (log,) = setup.world.logs()
    assert log.is_stream is True
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)


def test_tool_call_stream_on_an_openai_channel(
    client: anthropic.Anthropic, setup: Setup, upstream: FakeOpenAI
) -> None:
    upstream.scenario = "tool_call"

    with client.messages.stream(
        model=CHAT_MODEL,
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
        request_id = request_id_of(stream.response.headers)

    assert final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use"
    assert call.input == {"location": "Paris", "unit": "celsius"}
    assert_billed(setup.world, {request_id: CHAT_QUOTA})


def test_count_tokens_and_a_bad_key(
    client: anthropic.Anthropic, setup: Setup, server: DaphneServer
) -> None:
    counted = client.messages.count_tokens(model=CHAT_MODEL, messages=HELLO)

    assert counted.input_tokens == 9  # 3 per message + text + role + 3 priming
    bad = anthropic.Anthropic(base_url=server.base_url, api_key="sk-" + "0" * 48, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model=CHAT_MODEL, max_tokens=10, messages=HELLO)
    assert Log.objects.filter(user_id=setup.world.user.pk).count() == 0
    setup.world.refresh()
    assert setup.world.user.used_quota == 0
