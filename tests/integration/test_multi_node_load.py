"""500 concurrent streamed requests over two nodes against keys with small quotas.

Two Daphne processes share the test database (PostgreSQL or MySQL) and Redis, as
`deploy/multi-node/` runs them. Ten keys each hold enough for about a dozen of the 50
requests sent with it, half through each node, all at once. Every request reserves less than
it finally costs, so without a ledger shared by the nodes both would let requests run beside
each other on the same nearly spent key. Afterwards: every request was either answered in
full or refused with One API's message, every answer has exactly one log, the rows were
charged exactly the logged sum, and no key is below zero by more than one request's
settlement (its cost beyond its reservation).
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from django.conf import settings
from django.db import connection

from billing.models import Log
from channels_mgmt.models import Channel
from tests.conftest import require_service
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    CHAT_MESSAGES,
    CHAT_MODEL,
    DaphneServer,
    World,
    make_world,
    start_daphne,
    text_quota,
    wait_for_log_count,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

KEYS = 10
REQUESTS_PER_KEY = 50
COMPLETION_TOKENS = 1000
COST = 753  # ceil((11 + 1000 × 3) × 0.25): far above the reservation
RESERVATION = 127  # (PreConsumedQuota 500 + 11 prompt tokens) × 0.25, truncated
KEY_QUOTA = 12 * COST + 300


@pytest.fixture(scope="module")
def two_nodes(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaphneServer, DaphneServer]]:
    if connection.settings_dict["ENGINE"].endswith("sqlite3"):
        pytest.skip("multi-node needs PostgreSQL or MySQL: SQLite is single-node by design")
    if not settings.REDIS_CONN_STRING:
        pytest.skip("multi-node needs Redis (REDIS_CONN_STRING): the nodes share the ledger")
    parts = urlsplit(settings.REDIS_CONN_STRING)
    require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    shared = {
        "SESSION_SECRET": secrets.token_urlsafe(48),
        "REDIS_CONN_STRING": settings.REDIS_CONN_STRING,
        "SYNC_FREQUENCY": "3600",
        "DEBUG": "false",
    }
    with django_db_blocker.unblock(), ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(
                start_daphne, tmp_path_factory.mktemp(f"load-{kind}"), NODE_TYPE=kind, **shared
            )
            for kind in ("master", "slave")
        ]
        nodes = [future.result() for future in futures]
    try:
        yield nodes[0], nodes[1]
    finally:
        with django_db_blocker.unblock():
            for node in nodes:
                node.stop()
            Log.objects.all().delete()


async def streamed(client: httpx.AsyncClient, base_url: str, world: World) -> tuple[int, str, Any]:
    payload = {"model": CHAT_MODEL, "messages": CHAT_MESSAGES, "stream": True}
    async with client.stream(
        "POST", base_url + "/v1/chat/completions", json=payload, headers=world.auth_headers
    ) as response:
        raw = await response.aread()
    request_id = response.headers["x-oneapi-request-id"]
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [block[6:].decode() for block in raw.split(b"\n\n") if block.startswith(b"data: ")]
        return response.status_code, request_id, events
    return response.status_code, request_id, orjson.loads(raw)


def fire(nodes: tuple[DaphneServer, DaphneServer], worlds: list[World]) -> list[tuple]:
    jobs = [(nodes[i % 2].base_url, world) for world in worlds for i in range(REQUESTS_PER_KEY)]

    async def run() -> list[tuple]:
        limits = httpx.Limits(max_connections=len(jobs), max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=180) as client:
            return await asyncio.gather(*(streamed(client, url, world) for url, world in jobs))

    return asyncio.run(run())


def test_500_streams_over_two_nodes_bill_exactly_and_never_overdraw(
    two_nodes: tuple[DaphneServer, DaphneServer], transactional_db: None
) -> None:
    assert text_quota(CHAT_MODEL, 11, COMPLETION_TOKENS) == COST
    with FakeOpenAI(api_key="sk-upstream", completion_tokens=COMPLETION_TOKENS) as upstream:
        worlds = [make_world(upstream, models=CHAT_MODEL, key_quota=KEY_QUOTA) for _ in range(KEYS)]
        for node in two_nodes:
            wait_for_routing(node.base_url, worlds[-1])
        upstream.reset()

        outcomes = fire(two_nodes, worlds)

        assert len(outcomes) == KEYS * REQUESTS_PER_KEY == 500
        assert len({request_id for _, request_id, _ in outcomes}) == 500
        senders = [world for world in worlds for _ in range(REQUESTS_PER_KEY)]
        by_key: dict[str, list[tuple]] = {}
        for outcome, world in zip(outcomes, senders, strict=True):
            by_key.setdefault(world.api_key, []).append(outcome)
        served = 0
        refusals: Counter[tuple[int, str]] = Counter()
        for world in worlds:
            answered = {}
            for status, request_id, body in by_key[world.api_key]:
                if status == 200:
                    assert body[-1] == "[DONE]", body[-3:]
                    text = "".join(
                        orjson.loads(event)["choices"][0]["delta"].get("content") or ""
                        for event in body[:-1]
                    )
                    assert text == upstream.reply
                    answered[request_id] = COST
                else:
                    error = body["error"]
                    message = error["message"].removesuffix(f" (request id: {request_id})")
                    refusals[(status, error.get("code") or message)] += 1
            served += len(answered)
            assert answered, "no request of this key got through"
            # One log per answer, the rows charged exactly their sum.
            logs = wait_for_log_count(world.user.pk, len(answered), timeout=30)
            assert {log.request_id: log.quota for log in logs} == answered
            world.refresh()
            assert world.key.remain_quota == KEY_QUOTA - COST * len(answered)
            assert world.key.used_quota == world.user.used_quota == COST * len(answered)
            assert world.user.quota == world.initial_quota - COST * len(answered)
            assert world.key.request_count == world.user.request_count == len(answered)
            # Two nodes, 50 requests at once: still at most one settlement below zero.
            assert world.key.remain_quota >= -(COST - RESERVATION), (
                f"{len(answered)} served; remain_quota {world.key.remain_quota}"
            )
        assert len(upstream.requests) == served
        # The ten channels (all serving the model) were charged what the keys were.
        channels = Channel.objects.filter(pk__in=[world.channel.pk for world in worlds])
        assert sum(channel.used_quota for channel in channels) == COST * served
        assert sum(channel.request_count for channel in channels) == served
        # The refused were refused with One API's messages: the key's quota fell short at
        # the reservation (403) or the key was already spent (401).
        assert set(refusals) <= {
            (403, "pre_consume_token_quota_failed"),
            (401, "该令牌额度已用尽"),
        }, refusals
