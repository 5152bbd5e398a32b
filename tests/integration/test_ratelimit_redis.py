"""Rate limits shared by real gateway nodes through Redis (database 12).

Two Daphne processes share this run's database and Redis: requests, tokens and slots counted
by one are honoured by the other, concurrent clients get exactly the allowed number of
streams, and the slot of a node killed mid-stream frees itself after `RATE_LIMIT_SLOT_TTL`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from billing.models import ApiKey, Log
from oneapi import caching
from tests.conftest import require_service
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    DaphneServer,
    World,
    chat_body,
    make_world,
    post_chat,
    start_daphne,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REDIS_URL = "redis://127.0.0.1:6379/12"
PREFIX = f"test-rl-{secrets.token_hex(4)}"
SLOT_TTL = 3  # seconds; the nodes renew their slots every second
NODE_ENV = {
    "REDIS_CONN_STRING": REDIS_URL,
    "CACHE_KEY_PREFIX": PREFIX,
    "RATE_LIMIT_SLOT_TTL": str(SLOT_TTL),
    "SESSION_SECRET": secrets.token_urlsafe(48),
    "SYNC_FREQUENCY": "3600",
    "DEBUG": "false",
}
TOKENS_PER_ANSWER = 18  # FakeOpenAI: 11 prompt + 7 completion


def clear_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{PREFIX}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def held_slots(key: ApiKey) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.zcard(f"{PREFIX}:ratelimit:key:{key.pk}:slots"))
    finally:
        client.close()


@pytest.fixture(scope="module")
def redis_up() -> None:
    require_service("Redis", "127.0.0.1", 6379)


@pytest.fixture(scope="module")
def nodes(
    redis_up: None,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DaphneServer, DaphneServer]]:
    started: list[DaphneServer] = []
    with django_db_blocker.unblock():
        try:
            with ThreadPoolExecutor(max_workers=2) as pool:
                futures = [
                    pool.submit(
                        start_daphne, tmp_path_factory.mktemp(f"rl-node-{name}"), **NODE_ENV
                    )
                    for name in ("a", "b")
                ]
            started.extend(f.result() for f in futures if f.exception() is None)
            for future in futures:
                future.result()  # the first failure, once every started node is known
            yield started[0], started[1]
        finally:
            for node in started:
                node.stop()
            Log.objects.all().delete()
            clear_redis()


@pytest.fixture(autouse=True)
def write_backs_idle(django_db_blocker: Any) -> Iterator[None]:
    """The database is emptied after each test (TRUNCATE on PostgreSQL). A node applying the
    test's last charges at that moment holds row locks the TRUNCATE waits for while it waits
    for the TRUNCATE's: PostgreSQL then aborts one of them. Wait until the logs stop changing
    (the write-back runs every 0.5 s) before the test ends."""
    yield
    with django_db_blocker.unblock():
        count, quiet_since = Log.objects.count(), time.monotonic()
        while time.monotonic() - quiet_since < 1.2:
            time.sleep(0.2)
            now = Log.objects.count()
            if now != count:
                count, quiet_since = now, time.monotonic()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


@pytest.fixture
def shared(settings: Any) -> None:
    """This process publishes its cache invalidations where the nodes listen."""
    settings.REDIS_CONN_STRING = REDIS_URL
    settings.CACHE_KEY_PREFIX = PREFIX
    clear_redis()


def limited_world(upstream: FakeOpenAI, servers: tuple[DaphneServer, ...], **limits: int) -> World:
    upstream.reset()
    world = make_world(upstream, models="gpt-3.5-turbo", unlimited_key=True)
    ApiKey.objects.filter(pk=world.key.pk).update(**limits)
    caching.invalidate(caching.KEY, world.key.key)
    for server in servers:
        wait_for_routing(server.base_url, world)
    upstream.reset()
    return world


def test_requests_counted_on_one_node_are_refused_by_the_other(
    nodes: tuple[DaphneServer, DaphneServer], upstream: FakeOpenAI, shared: None
) -> None:
    a, b = nodes
    world = limited_world(upstream, nodes, rpm_limit=4)
    remaining = []
    for server in (a, b, a, b):
        response = post_chat(server.base_url, world)
        assert response.status_code == 200, response.text
        remaining.append(response.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["3", "2", "1", "0"]

    for server in (a, b):
        refused = post_chat(server.base_url, world)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
        assert error["message"].startswith(
            f"Rate limit reached for gpt-3.5-turbo in key #{world.key.pk} on requests per min "
            "(RPM): Limit 4, Used 4, Requested 1. Please try again in "
        )
        assert 1 <= int(refused.headers["retry-after"]) <= 15
        assert refused.headers["x-ratelimit-limit-requests"] == "4"
    assert len(upstream.requests) == 4


def test_tokens_used_on_one_node_count_on_the_other(
    nodes: tuple[DaphneServer, DaphneServer], upstream: FakeOpenAI, shared: None
) -> None:
    a, b = nodes
    world = limited_world(upstream, nodes, tpm_limit=40)
    # Each request's prompt is estimated at 9 tokens (3 per message, "user", "Hello there",
    # 3 to prime the reply) and uses 18 in the end.
    assert post_chat(a.base_url, world).status_code == 200  # 18 used
    second = post_chat(b.base_url, world)
    assert second.status_code == 200  # 18 + 9 fits; 36 used
    assert second.headers["x-ratelimit-remaining-tokens"] == str(40 - TOKENS_PER_ANSWER - 9)
    refused = post_chat(a.base_url, world)  # 36 + 9 does not fit, on either node
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "tokens"
    assert "Limit 40, Used 36, Requested 9." in refused.json()["error"]["message"]


def stream_chat(base_url: str, world: World) -> tuple[int, bytes]:
    with httpx.stream(
        "POST",
        f"{base_url}/v1/chat/completions",
        json=chat_body(stream=True),
        headers=world.auth_headers,
        timeout=60,
    ) as response:
        return response.status_code, response.read()


def test_concurrent_clients_get_exactly_the_allowed_streams(
    nodes: tuple[DaphneServer, DaphneServer], upstream: FakeOpenAI, shared: None
) -> None:
    world = limited_world(upstream, nodes, concurrency_limit=2)
    upstream.scenario = "slow_stream"
    upstream.chunk_delay = 0.3
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(stream_chat, nodes[i % 2].base_url, world) for i in range(8)]
            results = [future.result() for future in futures]
    finally:
        upstream.scenario = "ok"
    statuses = sorted(status for status, _ in results)
    assert statuses == [200, 200, 429, 429, 429, 429, 429, 429]
    for status, body in results:
        if status == 200:
            assert body.rstrip().endswith(b"data: [DONE]")
    assert held_slots(world.key) == 0  # both streams gave theirs back
    for server in nodes:
        assert post_chat(server.base_url, world).status_code == 200


def test_the_slot_of_a_killed_node_frees_itself(
    nodes: tuple[DaphneServer, DaphneServer],
    upstream: FakeOpenAI,
    shared: None,
    tmp_path: Path,
) -> None:
    doomed = start_daphne(tmp_path / "doomed", **NODE_ENV)
    try:
        survivor = nodes[1]
        world = limited_world(upstream, (doomed, survivor), concurrency_limit=1)
        upstream.scenario = "slow_stream"
        upstream.chunk_delay = 2.0  # a stream far longer than this test
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(stream_chat, doomed.base_url, world)
            deadline = time.monotonic() + 15
            while not upstream.requests:
                assert time.monotonic() < deadline, "the stream never reached the upstream"
                time.sleep(0.05)
            upstream.scenario = "ok"
            assert post_chat(survivor.base_url, world).status_code == 429  # the slot is held
            time.sleep(SLOT_TTL + 0.5)  # still held: the live node renews it
            assert post_chat(survivor.base_url, world).status_code == 429

            doomed.kill()
            killed_at = time.monotonic()
            with pytest.raises(httpx.HTTPError):
                pending.result(timeout=30)
        assert held_slots(world.key) == 1  # nobody released it
        while True:
            response = post_chat(survivor.base_url, world)
            if response.status_code == 200:
                break
            assert response.status_code == 429, response.text
            assert time.monotonic() - killed_at < SLOT_TTL + 2, "the dead node's slot stayed"
            time.sleep(0.2)
        assert time.monotonic() - killed_at >= SLOT_TTL - 1.5
    finally:
        upstream.scenario = "ok"
        doomed.stop()
