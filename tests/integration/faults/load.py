"""Billed load through real nodes, what each client saw, and the audit of the books afterwards.

`run_load` sends N chat requests (plain and streamed, spread over the nodes and over time) and
classifies every answer: a whole success, a clear error (OpenAI's error JSON with a sensible
status, or an error event at the end of a stream that had started), or a connection error
(only a killed node may cause those). `audit` then compares what the clients saw with the
logs and the user, key and channel rows, and counts lost records:

- a success (or a started stream, billed for what it generated) without a log;
- a request charged twice (two logs, or a counter that moved by more than its logs);
- a charge not applied (a counter or balance that moved by less than its logs).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from accounts.models import User
from billing.models import ApiKey, Log
from channels_mgmt.models import Channel
from tests.factories import make_channel, make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import CHAT_MESSAGES, CHAT_MODEL, text_quota

USER_QUOTA = 50_000_000
KEY_QUOTA = 20_000_000

OK, CUT, ERROR, CONNECTION = "ok", "cut", "error", "connection"


@dataclass
class Outcome:
    node: str
    stream: bool
    kind: str = CONNECTION  # OK, CUT (a stream that started and ended in an error event), ...
    status: int | None = None
    request_id: str | None = None
    detail: str = ""

    @property
    def billable(self) -> bool:
        """The client got a 200 and content: the gateway must have billed it."""
        return self.kind in (OK, CUT)


@dataclass
class Books:
    """Two channels (A, the one that fails, and B) serving one user's limited key."""

    user: User
    key: ApiKey
    channels: list[Channel]

    @property
    def api_key(self) -> str:
        return "sk-" + self.key.key


def make_books(*upstreams: FakeOpenAI) -> Books:
    user = make_user(quota=USER_QUOTA)
    key = ApiKey.objects.create(
        user=user, key=secrets.token_hex(24), name="fault key", remain_quota=KEY_QUOTA
    )
    channels = [
        make_channel(name=f"fault {name}", base_url=upstream.base_url, models=CHAT_MODEL)
        for name, upstream in zip("AB", upstreams, strict=False)
    ]
    return Books(user, key, channels)


# --------------------------------------------------------------------------- load


def _events(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


def _clear_error(body: Any) -> str:
    """The error's message when `body` is OpenAI's error object, else ''."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return ""


async def _one(client: httpx.AsyncClient, node: str, api_key: str, stream: bool) -> Outcome:
    outcome = Outcome(node, stream)
    body: dict[str, Any] = {"model": CHAT_MODEL, "messages": CHAT_MESSAGES}
    if stream:
        body["stream"] = True
    headers = {"Authorization": f"Bearer {api_key}"}
    try:
        async with client.stream(
            "POST", f"{node}/v1/chat/completions", json=body, headers=headers
        ) as response:
            outcome.status = response.status_code
            outcome.request_id = response.headers.get("x-oneapi-request-id")
            text = ""
            async for chunk in response.aiter_text():
                text += chunk
    except httpx.TransportError as error:
        outcome.kind, outcome.detail = CONNECTION, repr(error)
        return outcome
    outcome.kind, outcome.detail = _classify(outcome.status, stream, text)
    return outcome


def _classify(status: int, stream: bool, text: str) -> tuple[str, str]:
    if status != 200:
        try:
            message = _clear_error(orjson.loads(text))
        except orjson.JSONDecodeError:
            message = ""
        if status >= 400 and message:
            return ERROR, f"{status} {message}"
        return "unclear", f"{status} {text[:200]!r}"
    if not stream:
        try:
            choices = orjson.loads(text)["choices"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return "unclear", f"200 without a completion: {text[:200]!r}"
        return (OK, "") if choices else ("unclear", text[:200])
    events = _events(text)
    if events and events[-1] == "[DONE]":
        return OK, ""
    if events:
        last = orjson.loads(events[-1])
        message = _clear_error(last)
        if message:
            return CUT, message
    return "unclear", f"stream without [DONE] or an error event: {text[-200:]!r}"


async def _load(
    nodes: Sequence[str],
    api_key: str,
    count: int,
    duration: float,
    during: Sequence[tuple[float, Callable[[], None]]],
) -> list[Outcome]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        started = time.monotonic()

        async def scheduled(number: int) -> Outcome:
            await asyncio.sleep(duration * number / count)
            node = nodes[number % len(nodes)]
            return await _one(client, node, api_key, stream=(number // len(nodes)) % 2 == 1)

        async def faults() -> None:
            for at, action in during:
                await asyncio.sleep(max(at - (time.monotonic() - started), 0))
                await asyncio.to_thread(action)

        fault_task = asyncio.ensure_future(faults())
        outcomes = await asyncio.gather(*(scheduled(n) for n in range(count)))
        await fault_task
    return list(outcomes)


def run_load(
    nodes: Sequence[str],
    api_key: str,
    count: int,
    duration: float = 0.0,
    during: Sequence[tuple[float, Callable[[], None]]] = (),
) -> list[Outcome]:
    """`count` requests spread evenly over `duration` seconds and over the nodes, every other
    one streamed; each `(at, action)` of `during` runs `at` seconds after the start."""
    return asyncio.run(_load(nodes, api_key, count, duration, during))


# --------------------------------------------------------------------------- audit


@dataclass
class Row:
    fault: str
    requests: int
    ok: int
    errors: int
    billed: int
    lost: int
    notes: list[str] = field(default_factory=list)


def audit(fault: str, books: Books, outcomes: Sequence[Outcome]) -> Row:
    """Compare what the clients saw with the logs and the rows (read them after the nodes
    wrote everything back)."""
    logs = list(Log.objects.filter(user_id=books.user.pk))
    by_id = Counter(log.request_id for log in logs)
    billable = {o.request_id for o in outcomes if o.billable}
    notes: list[str] = []

    missing = len([rid for rid in billable if rid not in by_id])
    doubled = sum(n - 1 for n in by_id.values() if n > 1)
    unseen = [rid for rid in by_id if rid not in billable]
    if missing:
        notes.append(f"{missing} billable answers without a log")
    if doubled:
        notes.append(f"{doubled} request ids logged twice")
    if unseen:
        # A node killed between journaling a charge and sending its last byte: billed for
        # work done, the client saw a connection error. Allowed only for connection errors.
        notes.append(f"{len(unseen)} billed answers the client did not receive whole")
        allowed = sum(1 for o in outcomes if o.kind == CONNECTION)
        if len(unseen) > allowed:
            notes.append(f"{len(unseen) - allowed} logs match no request")
            missing += len(unseen) - allowed
    mispriced = [
        log.request_id
        for log in logs
        if log.quota != text_quota(CHAT_MODEL, log.prompt_tokens, log.completion_tokens)
    ]
    if mispriced:
        notes.append(f"{len(mispriced)} logs priced wrong")

    total, count = sum(log.quota for log in logs), len(logs)
    user = User.objects.get(pk=books.user.pk)
    key = ApiKey.objects.get(pk=books.key.pk)
    channels = Channel.objects.filter(pk__in=[c.pk for c in books.channels])
    channel_quota = sum(c.used_quota for c in channels)
    channel_requests = sum(c.request_count for c in channels)
    # The channels may also have served other users (a test's probes): all their logs count.
    channel_logs = Log.objects.filter(channel_id__in=[c.pk for c in books.channels])
    channel_count = channel_logs.count()
    channel_total = sum(channel_logs.values_list("quota", flat=True))
    counters = {  # name: (value, expected)
        "user.request_count": (user.request_count, count),
        "key.request_count": (key.request_count, count),
        "channels.request_count": (channel_requests, channel_count),
    }
    balances = {
        "user.quota": (books.user.quota - user.quota, total),
        "user.used_quota": (user.used_quota, total),
        "key.remain_quota": (books.key.remain_quota - key.remain_quota, total),
        "key.used_quota": (key.used_quota, total),
        "channels.used_quota": (channel_quota, channel_total),
    }
    # In records: a counter off by k means k charges not applied (or applied twice).
    off_by = max(abs(value - expected) for value, expected in counters.values())
    for name, (value, expected) in counters.items():
        if value != expected:
            notes.append(f"{name} {value} != {expected} logs")
    quota_off = [name for name, (value, expected) in balances.items() if value != expected]
    for name in quota_off:
        notes.append(f"{name} moved by {balances[name][0]} != {balances[name][1]} logged")
    lost = missing + doubled + off_by + (1 if quota_off and not off_by else 0)

    ok = sum(1 for o in outcomes if o.kind == OK)
    errors = sum(1 for o in outcomes if o.kind != OK)
    return Row(fault, len(outcomes), ok, errors, count, lost, notes)


def unclear(outcomes: Sequence[Outcome], *, connection_errors_allowed: bool = False) -> list[str]:
    """Answers that are neither a success nor a clear error."""
    allowed = {OK, CUT, ERROR} | ({CONNECTION} if connection_errors_allowed else set())
    return [f"{o.node} stream={o.stream}: {o.detail}" for o in outcomes if o.kind not in allowed]


def kinds(outcomes: Sequence[Outcome]) -> dict[str, int]:
    return dict(Counter(o.kind for o in outcomes))
