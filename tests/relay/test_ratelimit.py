"""Rate limits per key and per user of a group: RPM, TPM and concurrency, in memory and Redis.

Relay tests run against both stores (`backend`); with Redis they use database 12 and a key
prefix of their own. The arithmetic is tested directly on the memory store, with a clock of
the test's choosing.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync

from accounts.models import User
from billing.models import ApiKey
from oneapi.api import ApiError
from oneapi.api_views import validate_option
from oneapi.options import set_option
from relay import ratelimit, ratelimit_redis
from relay.errors import RelayError
from relay.http import StreamResponse
from relay.ratelimit import Limits, MemoryStore, Subject, Ticket, Verdict
from relay.upstream import close_client
from tests import relay_harness
from tests.conftest import require_service
from tests.factories import make_channel
from tests.relay.conftest import World
from tests.relay_harness import RelayClient, Result

pytestmark = pytest.mark.django_db

REDIS_URL = "redis://127.0.0.1:6379/12"
CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello"}]}
STREAM = {**CHAT, "stream": True}
# FakeOpenAI's usage per answer: 11 prompt + 7 completion tokens.
TOKENS_PER_ANSWER = 18
# The relay's count of CHAT's prompt (3 per message, "user", "Hello", 3 to prime the reply).
PROMPT_ESTIMATE = 8
MINUTE_US = 60_000_000


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "_memory", MemoryStore())


@pytest.fixture
def redis_prefix(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Redis database 12 under a prefix of this test's; each request's loop closes its
    client as the harness closes its upstream client."""
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"test-limits-{uuid.uuid4().hex[:8]}"
    settings.REDIS_CONN_STRING = REDIS_URL
    settings.CACHE_KEY_PREFIX = prefix

    async def close_both() -> None:
        await close_client()
        await close_limits()

    monkeypatch.setattr(relay_harness, "close_client", close_both)
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


async def close_limits() -> None:
    current = ratelimit.store()
    if isinstance(current, ratelimit_redis.RedisStore):
        await current.close()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, settings: Any) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_prefix")
    else:
        settings.REDIS_CONN_STRING = ""
    return request.param


def limit_key(world: World, **limits: int) -> None:
    """Set the key's limits before its first request (the relay's caches start empty)."""
    ApiKey.objects.filter(pk=world.key.pk).update(**limits)


def error_of(result: Result) -> dict[str, Any]:
    return result.json()["error"]


def slots_in_redis(prefix: str, ident: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.zcard(f"{prefix}:ratelimit:{ident}:slots"))
    finally:
        client.close()


# --------------------------------------------------------------------------- no limits


def test_without_limits_no_store_is_touched(
    world: World, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.REDIS_CONN_STRING = REDIS_URL  # even with Redis configured

    def unexpected() -> None:
        raise AssertionError("the rate-limit store was consulted for an unlimited key")

    monkeypatch.setattr(ratelimit, "store", unexpected)
    result = world.client.post("/v1/chat/completions", CHAT)
    assert result.status == 200
    assert not any(name.startswith("x-ratelimit") for name in result.headers)


# --------------------------------------------------------------------------- RPM


def test_rpm_refuses_with_openai_body_and_headers(world: World, backend: str) -> None:
    limit_key(world, rpm_limit=2)
    first = world.client.post("/v1/chat/completions", CHAT)
    second = world.client.post("/v1/chat/completions", CHAT)
    assert (first.status, second.status) == (200, 200)
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    assert re.fullmatch(r"\d+(\.\d+)?s|\d+ms", second.headers["x-ratelimit-reset-requests"])

    refused = world.client.post("/v1/chat/completions", CHAT)
    assert refused.status == 429
    error = error_of(refused)
    assert error["type"] == "requests"
    assert error["code"] == "rate_limit_exceeded"
    assert re.match(
        rf"Rate limit reached for gpt-3\.5-turbo in key #{world.key.pk} on requests per min "
        r"\(RPM\): Limit 2, Used 2, Requested 1\. Please try again in [\d.]+s\.",
        error["message"],
    ), error["message"]
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert len(world.upstream.requests) == 2  # the refused request never went upstream


def test_every_inbound_format_is_limited(world: World, backend: str) -> None:
    limit_key(world, rpm_limit=1)
    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    messages = {
        "model": "gpt-3.5-turbo",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    refused = world.client.post("/v1/messages", messages)
    assert refused.status == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"  # Anthropic's shape
    assert refused.headers["retry-after"] == "60"
    embeddings = {"model": "text-embedding-3-small", "input": "x"}
    assert world.client.post("/v1/embeddings", embeddings).status == 429


# --------------------------------------------------------------------------- TPM


def test_tpm_counts_the_tokens_used(world: World, backend: str) -> None:
    limit_key(world, tpm_limit=30)
    first = world.client.post("/v1/chat/completions", CHAT)
    assert first.status == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "30"
    second = world.client.post("/v1/chat/completions", CHAT)
    assert second.status == 200  # 18 used of 30, and the 8-token prompt estimate fits
    assert second.headers["x-ratelimit-remaining-tokens"] == str(
        30 - TOKENS_PER_ANSWER - PROMPT_ESTIMATE
    )

    refused = world.client.post("/v1/chat/completions", CHAT)  # 36 used: over
    assert refused.status == 429
    error = error_of(refused)
    assert error["type"] == "tokens"
    assert "on tokens per min (TPM): Limit 30, Used 36, Requested 8." in error["message"]
    # (36 + 8 - 30) tokens at 30 a minute come back in 28s.
    assert refused.headers["retry-after"] == "28"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


def test_tpm_checks_the_prompt_estimate(backend: str, redis_or_memory_loop: Any) -> None:
    subject = Subject(f"key:{uuid.uuid4().hex}", "key #1", Limits(tpm=100))

    async def scenario() -> None:
        with pytest.raises(RelayError) as too_large:
            await Ticket((subject,)).acquire("gpt-4o", 150)
        assert too_large.value.message.startswith(
            "Request too large for gpt-4o in key #1 on tokens per min (TPM): Limit 100, "
            "Requested 150."
        )
        assert not any(name == b"retry-after" for name, _ in too_large.value.headers)

        used = Ticket((subject,))
        await used.acquire("gpt-4o", 10)
        used.add_tokens(90)
        await used.release()
        await Ticket((subject,)).acquire("gpt-4o", 10)  # 90 + 10 fits
        with pytest.raises(RelayError) as over:
            await Ticket((subject,)).acquire("gpt-4o", 11)
        assert "Limit 100, Used 90, Requested 11." in over.value.message
        assert over.value.status == 429

    redis_or_memory_loop(scenario)


@pytest.fixture
def redis_or_memory_loop() -> Any:
    """Run a coroutine on a fresh loop, closing that loop's Redis client afterwards."""

    def run(scenario: Any) -> None:
        async def wrapped() -> None:
            try:
                await scenario()
            finally:
                await close_limits()

        async_to_sync(wrapped)()

    return run


# --------------------------------------------------------------------------- concurrency


def run_alongside_a_stream(world: World, request: Any) -> tuple[Result, Any]:
    """Start a slow stream in another thread, run `request` while it is in flight."""
    world.upstream.scenario = "slow_stream"
    world.upstream.chunk_delay = 0.3
    before = len(world.upstream.requests)
    with ThreadPoolExecutor(max_workers=1) as pool:
        stream = pool.submit(world.client.post, "/v1/chat/completions", STREAM)
        deadline = time.monotonic() + 10
        while len(world.upstream.requests) == before:
            assert time.monotonic() < deadline, "the stream never reached the upstream"
            time.sleep(0.02)
        during = request()
        return stream.result(timeout=30), during


def test_concurrency_limit_and_release_after_success(world: World, backend: str) -> None:
    limit_key(world, concurrency_limit=1)
    assert world.client.post("/v1/chat/completions", CHAT).status == 200  # warms the caches
    stream, during = run_alongside_a_stream(
        world, lambda: world.client.post("/v1/chat/completions", CHAT)
    )
    assert stream.status == 200 and stream.events[-1] == "[DONE]"
    assert during.status == 429
    error = error_of(during)
    assert error["type"] == "requests"
    assert "on concurrent requests: Limit 1, Used 1, Requested 1." in error["message"]
    assert during.headers["retry-after"] == "1"
    world.upstream.scenario = "ok"
    assert world.client.post("/v1/chat/completions", CHAT).status == 200


def test_slot_released_after_an_upstream_error(world: World, backend: str, settings: Any) -> None:
    limit_key(world, concurrency_limit=1, rpm_limit=100)
    world.upstream.scenario = "error_500"
    failed = world.client.post("/v1/chat/completions", CHAT)
    assert failed.status == 500
    assert failed.headers["x-ratelimit-limit-requests"] == "100"  # on errors too
    world.upstream.scenario = "ok"
    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    if backend == "redis":
        assert slots_in_redis(settings.CACHE_KEY_PREFIX, f"key:{world.key.pk}") == 0


def test_slot_released_when_the_client_leaves_mid_stream(
    world: World, backend: str, settings: Any
) -> None:
    limit_key(world, concurrency_limit=1, tpm_limit=1000)
    world.upstream.scenario = "slow_stream"
    world.upstream.chunk_delay = 0.1
    gone = world.client.post("/v1/chat/completions", STREAM, disconnect_after_frames=2)
    assert gone.status == 200
    assert gone.headers["x-ratelimit-limit-tokens"] == "1000"
    if backend == "redis":
        assert slots_in_redis(settings.CACHE_KEY_PREFIX, f"key:{world.key.pk}") == 0
    world.upstream.scenario = "ok"
    after = world.client.post("/v1/chat/completions", CHAT)
    assert after.status == 200
    # The partial answer's tokens were counted: fewer than 1000 - 1 remain.
    assert int(after.headers["x-ratelimit-remaining-tokens"]) < 999


def test_slot_released_when_the_client_leaves_before_the_first_frame(
    world: World, backend: str
) -> None:
    limit_key(world, concurrency_limit=1)
    gone = world.client.post("/v1/chat/completions", STREAM, disconnect_after_frames=0)
    assert gone.status in (0, 200)
    assert world.client.post("/v1/chat/completions", CHAT).status == 200


def test_speech_streams_release_their_slot(world: World, backend: str) -> None:
    limit_key(world, concurrency_limit=1)
    make_channel(base_url=world.upstream.base_url, models="tts-1")
    speech = {"model": "tts-1", "input": "Hello", "voice": "alloy"}
    assert world.client.post("/v1/audio/speech", speech).status == 200
    assert world.client.post("/v1/audio/speech", speech).status == 200


# --------------------------------------------------------------------------- a dead node


def test_slots_of_a_dead_node_expire(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch, redis_or_memory_loop: Any
) -> None:
    """A node that dies holding a slot stops renewing it; the slot lapses after the TTL."""
    monkeypatch.setattr(ratelimit, "SLOT_TTL_SECONDS", 1)
    subject = Subject("key:dead-node", "key #9", Limits(concurrency=1))

    async def scenario() -> None:
        await Ticket((subject,)).acquire("m", 1)
        await close_limits()  # the node is gone: its heartbeat with it, nothing released
        with pytest.raises(RelayError):
            await Ticket((subject,)).acquire("m", 1)
        await asyncio.sleep(1.2)
        survivor = Ticket((subject,))
        await survivor.acquire("m", 1)
        await survivor.release()

    redis_or_memory_loop(scenario)


def test_a_live_node_keeps_its_slots_past_the_ttl(
    redis_prefix: str, monkeypatch: pytest.MonkeyPatch, redis_or_memory_loop: Any
) -> None:
    monkeypatch.setattr(ratelimit, "SLOT_TTL_SECONDS", 1)
    subject = Subject("key:long-stream", "key #9", Limits(concurrency=1))

    async def scenario() -> None:
        holder = Ticket((subject,))
        await holder.acquire("m", 1)
        await asyncio.sleep(1.6)  # renewed every third of a second meanwhile
        with pytest.raises(RelayError):
            await Ticket((subject,)).acquire("m", 1)
        await holder.release()
        other = Ticket((subject,))
        await other.acquire("m", 1)
        await other.release()
        assert slots_in_redis(redis_prefix, "key:long-stream") == 0

    redis_or_memory_loop(scenario)


# --------------------------------------------------------------------------- groups


def second_key(user: User) -> RelayClient:
    key = ApiKey.objects.create(user=user, key="b" * 48, name="second", remain_quota=5_000_000)
    return RelayClient(key.key)


def test_group_limits_apply_per_user_across_keys(world: World, backend: str) -> None:
    set_option("GroupRateLimits", json.dumps({"default": {"rpm": 2}, "vip": {"rpm": 100}}))
    other_key = second_key(world.user)
    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    ok = other_key.post("/v1/chat/completions", CHAT)
    assert ok.status == 200
    assert ok.headers["x-ratelimit-remaining-requests"] == "0"
    refused = other_key.post("/v1/chat/completions", CHAT)
    assert refused.status == 429
    assert (
        f"in group default (user #{world.user.pk}) on requests per min"
        in (error_of(refused)["message"])
    )


def test_group_limits_follow_the_users_group(world: World, backend: str) -> None:
    set_option("GroupRateLimits", json.dumps({"vip": {"rpm": 1}}))
    for _ in range(3):
        result = world.client.post("/v1/chat/completions", CHAT)
        assert result.status == 200
        assert "x-ratelimit-limit-requests" not in result.headers


def test_key_and_group_limits_both_hold(world: World, backend: str) -> None:
    set_option("GroupRateLimits", json.dumps({"default": {"rpm": 10, "tpm": 1000}}))
    limit_key(world, rpm_limit=3)
    first = world.client.post("/v1/chat/completions", CHAT)
    # The tighter of the two is reported: the key's 3 requests, the group's tokens.
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    assert first.headers["x-ratelimit-limit-tokens"] == "1000"
    world.client.post("/v1/chat/completions", CHAT)
    world.client.post("/v1/chat/completions", CHAT)
    refused = world.client.post("/v1/chat/completions", CHAT)
    assert refused.status == 429
    assert f"in key #{world.key.pk}" in error_of(refused)["message"]


def test_a_refused_request_counts_nowhere(world: World, backend: str) -> None:
    """All checks pass before anything is counted: a key refusal spends none of the group's."""
    set_option("GroupRateLimits", json.dumps({"default": {"rpm": 3}}))
    limit_key(world, rpm_limit=1)
    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    for _ in range(3):
        assert world.client.post("/v1/chat/completions", CHAT).status == 429
    other = second_key(world.user).post("/v1/chat/completions", CHAT)
    assert other.status == 200
    assert other.headers["x-ratelimit-remaining-requests"] == "1"  # 3 - 2 counted


# --------------------------------------------------------------------------- the option


@pytest.mark.parametrize(
    "value",
    [
        "[]",
        "not json",
        '{"vip": 5}',
        '{"vip": {"rpm": -1}}',
        '{"vip": {"rpm": 1.5}}',
        '{"vip": {"rpm": true}}',
        '{"vip": {"requests": 5}}',
    ],
)
def test_the_option_is_validated(value: str) -> None:
    with pytest.raises(ApiError) as error:
        validate_option("GroupRateLimits", value)
    assert str(error.value.args[0]).startswith("GroupRateLimits: ")


def test_a_valid_option_passes() -> None:
    validate_option("GroupRateLimits", '{"default": {"rpm": 60, "tpm": 100000, "concurrency": 5}}')
    validate_option("GroupRateLimits", "{}")


def test_a_malformed_stored_option_limits_nothing() -> None:
    parsed = ratelimit.parse_group_limits('{"a": {"rpm": 5}, "b": "x", "c": {"rpm": 0}}')
    assert parsed == {"a": Limits(rpm=5)}
    assert ratelimit.parse_group_limits("[1]") == {}


# --------------------------------------------------------------------------- arithmetic


def check(store: MemoryStore, subject: Subject, now: float, want: int = 1) -> Verdict:
    return Verdict.parse(store._check((subject,), "slot", want, now))


def test_rpm_allows_a_burst_then_one_per_interval() -> None:
    store = MemoryStore()
    subject = Subject("s", "s", Limits(rpm=60))
    now = 1_000_000_000.0
    remaining = [check(store, subject, now).states[0].rpm_remaining for _ in range(60)]
    assert remaining == list(range(59, -1, -1))
    refused = check(store, subject, now)
    assert (refused.allowed, refused.kind, refused.used, refused.retry_ms) == (
        False,
        ratelimit.RPM,
        60,
        1000,
    )
    assert not check(store, subject, now + 999_000).allowed
    assert check(store, subject, now + 1_000_000).allowed


def test_tpm_debt_is_capped_at_a_minute() -> None:
    store = MemoryStore()
    subject = Subject("s", "s", Limits(tpm=100))
    async_to_sync(store.release)((subject,), "", 10_000)  # a hundred minutes' worth
    debt_us = store._tats["s:tpm"] - time.monotonic_ns() / 1000
    assert MINUTE_US < debt_us <= 2 * MINUTE_US
    refused = check(store, subject, time.monotonic_ns() / 1000)
    assert refused.used == 200 and 60_000 < refused.retry_ms <= 61_000


def test_duration_text_is_openais() -> None:
    assert [ratelimit.duration_text(ms) for ms in (0, 20, 1000, 1500, 360_000, 3_723_000)] == [
        "0s",
        "20ms",
        "1s",
        "1.5s",
        "6m0s",
        "1h2m3s",
    ]


def test_a_stream_releases_before_its_last_chunk(redis_or_memory_loop: Any, settings: Any) -> None:
    """The slot is free (and the tokens counted) once the frames end, before the server sends
    the body's final chunk: a client's next request can never find its own slot taken."""
    settings.REDIS_CONN_STRING = ""  # this test reads the in-memory store
    subject = Subject("key:sequential", "key #1", Limits(tpm=1000, concurrency=1))
    ticket = Ticket((subject,))
    memory = ratelimit._memory

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b"data: 1\n\n"
        finally:
            ticket.add_tokens(40)  # a stream settles in its own cleanup

    async def scenario() -> None:
        response = await ratelimit.enforce(
            ticket, "m", 1, lambda: asyncio.sleep(0, StreamResponse(200, frames()))
        )
        assert memory._slots[subject.ident] == {ticket.slot}
        assert [frame async for frame in response.frames] == [b"data: 1\n\n"]
        assert memory._slots[subject.ident] == set()
        used = memory._tats[subject.ident + ":tpm"] - time.monotonic_ns() / 1000
        assert 39 * MINUTE_US / 1000 < used <= 40 * MINUTE_US / 1000
        assert response.on_close is not None
        await response.on_close()  # and closing again gives back nothing twice

    redis_or_memory_loop(scenario)


def test_an_unreachable_redis_lets_requests_through(world: World, settings: Any) -> None:
    settings.REDIS_CONN_STRING = "redis://127.0.0.1:1/12"  # nothing listens there
    limit_key(world, rpm_limit=1, concurrency_limit=1)
    for _ in range(2):
        result = world.client.post("/v1/chat/completions", CHAT)
        assert result.status == 200
        assert "x-ratelimit-limit-requests" not in result.headers
