"""Prometheus metrics recorded by relayed requests (read back from the process's registry)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from billing.models import Log
from oneapi.log_format import JsonFormatter, RequestIdFilter
from oneapi.options import set_option
from relay import metrics
from relay.metrics import REGISTRY
from tests.relay.conftest import World
from tests.relay_harness import RelayClient

pytestmark = pytest.mark.django_db

CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]}
STREAM = {**CHAT, "stream": True}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """A sample's value before and after a block: the registry lives as long as the process."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name = name
        self.labels = labels
        self.before = value(name, **labels)

    @property
    def moved(self) -> float:
        return value(self.name, **self.labels) - self.before


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/chat/completions", "chat"),
        ("/chat/completions", "chat"),
        ("/v1/completions", "completions"),
        ("/v1/embeddings", "embeddings"),
        ("/v1/engines/ada/embeddings", "embeddings"),
        ("/v1/images/generations", "images"),
        ("/v1/audio/speech", "audio"),
        ("/v1/messages", "messages"),
        ("/v1/responses", "responses"),
        ("/v1/rerank", "rerank"),
        ("/v1/models/gpt-4o", "models"),
        ("/v1/moderations", "other"),
        ("/dashboard/billing/usage", "other"),
        ("/v1", "other"),
    ],
)
def test_route_family(path: str, family: str) -> None:
    assert metrics.route_family(path) == family


def test_a_chat_request_is_counted_timed_and_billed(world: World) -> None:
    channel = str(world.channel.pk)
    requests = Delta("oneapi_relay_requests_total", route="chat", status="200")
    latency = Delta("oneapi_relay_request_duration_seconds_count", route="chat")
    attempts = Delta(
        "oneapi_upstream_attempts_total",
        channel=channel,
        channel_type="1",
        outcome="success",
        status_class="2xx",
    )
    upstream_latency = Delta(
        "oneapi_upstream_duration_seconds_count",
        channel=channel,
        channel_type="1",
        outcome="success",
    )
    usage = {"model": "gpt-3.5-turbo", "channel": channel}
    prompt = Delta("oneapi_relay_tokens_total", kind="prompt", **usage)
    completion = Delta("oneapi_relay_tokens_total", kind="completion", **usage)
    quota = Delta("oneapi_relay_quota_total", **usage)

    assert world.client.post("/v1/chat/completions", CHAT).status == 200
    assert world.client.post("/v1/chat/completions", STREAM).status == 200

    assert requests.moved == 2
    assert latency.moved == 2
    assert attempts.moved == 2
    assert upstream_latency.moved == 2
    assert value("oneapi_relay_requests_in_flight") == 0
    world.refresh()
    logs = list(Log.objects.all())
    assert prompt.moved == sum(log.prompt_tokens for log in logs) > 0
    assert completion.moved == sum(log.completion_tokens for log in logs) > 0
    assert quota.moved == sum(log.quota for log in logs) > 0


def test_other_routes_are_counted_by_family_and_status(world: World) -> None:
    models = Delta("oneapi_relay_requests_total", route="models", status="200")
    denied = Delta("oneapi_relay_requests_total", route="embeddings", status="401")
    assert world.client.get("/v1/models").status == 200
    anonymous = RelayClient(key=None)
    assert anonymous.post("/v1/embeddings", {"model": "x", "input": "y"}).status == 401
    assert models.moved == 1
    assert denied.moved == 1


def test_an_upstream_failure_is_counted_by_channel_and_status_class(world: World) -> None:
    channel = str(world.channel.pk)
    failures = Delta(
        "oneapi_upstream_attempts_total",
        channel=channel,
        channel_type="1",
        outcome="failure",
        status_class="5xx",
    )
    timed = Delta(
        "oneapi_upstream_duration_seconds_count",
        channel=channel,
        channel_type="1",
        outcome="failure",
    )
    world.upstream.scenario = "error_500"

    result = world.client.post("/v1/chat/completions", CHAT)

    assert result.status >= 500
    assert failures.moved == 1
    assert timed.moved == 1
    assert value("oneapi_relay_requests_total", route="chat", status=str(result.status)) >= 1


def test_error_responses_are_counted_by_type(world: World) -> None:
    world.upstream.scenario = "error_500"
    result = world.client.post("/v1/chat/completions", CHAT)
    kind = result.json()["error"]["type"]
    counted = Delta("oneapi_relay_errors_total", type=kind)
    world.client.post("/v1/chat/completions", CHAT)
    assert counted.moved == 1

    missing = Delta("oneapi_relay_errors_total", type="one_api_error")
    anonymous = RelayClient(key=None)
    assert anonymous.post("/v1/chat/completions", CHAT).status == 401
    assert missing.moved == 1


def test_without_consume_logs_quota_is_counted_by_channel_only(world: World) -> None:
    set_option("LogConsumeEnabled", "false")
    channel = str(world.channel.pk)
    quota = Delta("oneapi_relay_quota_total", model="", channel=channel)
    tokens = Delta(
        "oneapi_relay_tokens_total", model="gpt-3.5-turbo", channel=channel, kind="prompt"
    )
    before = world.user.used_quota

    assert world.client.post("/v1/chat/completions", CHAT).status == 200

    world.refresh()
    assert quota.moved == world.user.used_quota - before > 0
    assert tokens.moved == 0


def test_in_flight_counts_requests_being_served() -> None:
    async def scenario() -> tuple[float, float]:
        tracker, token = metrics.start_request("/v1/chat/completions")
        during = value("oneapi_relay_requests_in_flight")
        metrics.end_request(tracker, token)
        return during, value("oneapi_relay_requests_in_flight")

    base = value("oneapi_relay_requests_in_flight")
    during, after = asyncio.run(scenario())
    assert during == base + 1
    assert after == base


def test_a_request_that_ends_without_a_response_counts_as_client_closed() -> None:
    closed = Delta("oneapi_relay_requests_total", route="audio", status="499")
    tracker, token = metrics.start_request("/v1/audio/speech")
    metrics.end_request(tracker, token)
    assert closed.moved == 1


def test_caller_supplied_type_and_latency_win() -> None:
    timed = Delta(
        "oneapi_upstream_duration_seconds_sum", channel="9001", channel_type="14", outcome="failure"
    )
    attempts = Delta(
        "oneapi_upstream_attempts_total",
        channel="9001",
        channel_type="14",
        outcome="failure",
        status_class="4xx",
    )
    metrics.record_upstream(9001, 429, channel_type=14, latency=1.5)
    assert timed.moved == 1.5
    assert attempts.moved == 1


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def entries(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_relayed_failure_is_logged_under_its_request_id(world: World, lines: io.StringIO) -> None:
    """The relay's own lines (the failed channel here) name the request; JSON formatting
    itself is covered in tests/oneapi/test_log_format.py."""
    world.upstream.scenario = "error_500"
    result = world.client.post(
        "/v1/chat/completions",
        {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]},
    )
    request_id = result.headers["x-oneapi-request-id"]
    relay_lines = [e for e in entries(lines) if e["logger"].startswith("relay")]
    assert relay_lines  # the failed channel is logged
    assert {e.get("request_id") for e in relay_lines} == {request_id}
