"""200 concurrent chat requests through one Daphne: every charge lands exactly once, and a
quota that covers only part of them is never overdrawn by more than one request's cost."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    CHAT_MESSAGES,
    CHAT_MODEL,
    CHAT_QUOTA,
    DaphneServer,
    World,
    assert_billed,
    make_world,
    start_daphne,
    text_quota,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REQUESTS = 200


@dataclass(frozen=True)
class Outcome:
    status: int
    request_id: str
    body: Any  # the JSON body, or the list of SSE payloads of a stream


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


async def one_request(client: httpx.AsyncClient, world: World, stream: bool) -> Outcome:
    payload: dict[str, Any] = {"model": CHAT_MODEL, "messages": CHAT_MESSAGES}
    if stream:
        payload["stream"] = True
    async with client.stream(
        "POST", "/v1/chat/completions", json=payload, headers=world.auth_headers
    ) as response:
        raw = await response.aread()
    request_id = response.headers["x-oneapi-request-id"]
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [block[6:].decode() for block in raw.split(b"\n\n") if block.startswith(b"data: ")]
        return Outcome(response.status_code, request_id, events)
    return Outcome(response.status_code, request_id, orjson.loads(raw))


def fire(server: DaphneServer, world: World, count: int = REQUESTS) -> list[Outcome]:
    """`count` requests at once (every other one streamed), each on its own connection."""

    async def run() -> list[Outcome]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
        async with httpx.AsyncClient(
            base_url=server.base_url, limits=limits, timeout=120
        ) as client:
            return await asyncio.gather(
                *(one_request(client, world, stream=i % 2 == 1) for i in range(count))
            )

    return asyncio.run(run())


def streamed_text(events: list[str]) -> str:
    assert events[-1] == "[DONE]"
    return "".join(
        orjson.loads(event)["choices"][0]["delta"].get("content") or "" for event in events[:-1]
    )


def assert_answered(outcome: Outcome, reply: str) -> None:
    assert outcome.status == 200, outcome.body
    if isinstance(outcome.body, list):
        assert streamed_text(outcome.body) == reply
    else:
        assert outcome.body["choices"][0]["message"]["content"] == reply


@pytest.fixture
def servers() -> Iterator[list[DaphneServer]]:
    started: list[DaphneServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def test_200_concurrent_requests_are_all_billed_exactly_once(
    tmp_path: Path,
    transactional_db: None,
    upstream: FakeOpenAI,
    servers: list[DaphneServer],
) -> None:
    world = make_world(upstream, models=CHAT_MODEL)
    server = start_daphne(tmp_path)
    servers.append(server)

    outcomes = fire(server, world)

    for outcome in outcomes:
        assert_answered(outcome, upstream.reply)
    request_ids = [outcome.request_id for outcome in outcomes]
    assert len(set(request_ids)) == REQUESTS
    assert len(upstream.requests) == REQUESTS
    assert_billed(world, dict.fromkeys(request_ids, CHAT_QUOTA))
    world.refresh()
    assert world.user.used_quota == REQUESTS * CHAT_QUOTA == 1600
    assert world.channel.used_quota == 1600
    assert world.key.used_quota == 1600


# (completion tokens the upstream reports, what one request then costs). The reservation of
# a request is One API's: (PreConsumedQuota 500 + 9 prompt tokens) × 0.25 = 127.
RESERVATION = 127
CHEAP = (7, CHAT_QUOTA)  # ceil((11 + 7 × 3) × 0.25): the reservation covers the cost
DEAR = (1000, 753)  # ceil((11 + 1000 × 3) × 0.25): a long answer costs more than reserved


@pytest.mark.parametrize("answers", [CHEAP, DEAR], ids=["cheap-answers", "long-answers"])
@pytest.mark.parametrize("limited", ["key", "user"])
def test_200_concurrent_requests_against_a_quota_for_about_50(
    tmp_path: Path,
    transactional_db: None,
    upstream: FakeOpenAI,
    servers: list[DaphneServer],
    limited: str,
    answers: tuple[int, int],
) -> None:
    completion_tokens, cost = answers
    assert text_quota(CHAT_MODEL, 11, completion_tokens) == cost
    upstream.completion_tokens = completion_tokens
    part_quota = 50 * cost
    if limited == "key":
        world = make_world(upstream, models=CHAT_MODEL, key_quota=part_quota)
    else:
        world = make_world(upstream, models=CHAT_MODEL, user_quota=part_quota, unlimited_key=True)
    server = start_daphne(tmp_path)
    servers.append(server)

    outcomes = fire(server, world)

    succeeded = [outcome for outcome in outcomes if outcome.status == 200]
    refused = [outcome for outcome in outcomes if outcome.status != 200]
    assert succeeded, "no request got through"
    for outcome in succeeded:
        assert_answered(outcome, upstream.reply)
    kinds = Counter(refusal_kind(outcome, limited) for outcome in refused)
    assert set(kinds) <= {"reserve", "exhausted"}, kinds
    # A refused request never reached the upstream.
    assert len(upstream.requests) == len(succeeded)
    request_ids = [outcome.request_id for outcome in outcomes]
    assert len(set(request_ids)) == REQUESTS

    assert_billed(world, {outcome.request_id: cost for outcome in succeeded})
    world.refresh()
    balance = world.key.remain_quota if limited == "key" else world.user.quota
    assert balance == part_quota - len(succeeded) * cost
    # At most one request's cost below zero, however many ran at once: so at most 51 of
    # the 200 were served, and the rest were refused.
    assert balance >= -cost, f"{len(succeeded)} of {REQUESTS} served; balance {balance}"
    assert refused
    if cost <= RESERVATION:
        # Each request held more than it finally cost: the balance cannot go below zero.
        assert balance >= 0


def refusal_kind(outcome: Outcome, limited: str) -> str:
    """Classify a refused request by One API's messages; anything else fails the test."""
    error = outcome.body["error"]
    suffix = f" (request id: {outcome.request_id})"
    assert error["message"].endswith(suffix), error
    message = error["message"].removesuffix(suffix)
    if limited == "key":
        if outcome.status == 403:
            assert (message, error["code"]) == ("令牌额度不足", "pre_consume_token_quota_failed")
            return "reserve"
        assert outcome.status == 401, outcome
        assert message == "该令牌额度已用尽", error
        return "exhausted"
    assert outcome.status == 403, outcome
    assert (message, error["code"]) == ("user quota is not enough", "insufficient_user_quota")
    return "reserve"
