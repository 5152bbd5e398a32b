"""Requests, tokens and concurrent requests per minute, per key and per user of a group.

A key's own limits (its `rpm_limit`, `tpm_limit`, `concurrency_limit`) apply to that key; a
group's limits (the `GroupRateLimits` option) apply to each user of the group, across all of
the user's keys. When both are set both are checked, and a request passes only if every
check passes (nothing is counted for a refused request).

The algorithms are the same in both stores:

- RPM is GCRA: a subject's "theoretical arrival time" (TAT) moves 60/rpm s ahead per request
  and a request passes while that leaves the TAT at most a minute ahead. A full minute's
  requests may come at once, then capacity comes back continuously, as OpenAI's does.
- TPM is a token bucket in the same form: the TAT moves 60/tpm s ahead per token actually
  used (added when the request ends) and a request passes while the tokens in the bucket
  plus its estimated prompt fit in the limit. A request may overdraw (its answer is not known
  beforehand); the debt is capped at one more minute, like a window sum would.
- Concurrency is a set of slots with expiry times. With Redis the node holding a slot renews
  it (a heartbeat, off the request path), so the slots of a node that died free themselves
  within `SLOT_TTL_SECONDS`.

With `REDIS_CONN_STRING` every node shares the state in Redis through `redis.asyncio`: one
Lua script when a request starts (all checks of all subjects, atomically) and one when it
ends (tokens added, slot freed). Without Redis the state lives in this process. The `limits`
library was not used: it checks one limit per call, cannot refuse a request on one limit
without counting it on another, and has no concurrency slots or after-the-fact token counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from django.conf import settings

from oneapi.env import env_int
from relay.errors import RelayError
from relay.http import HeaderList, Response, StreamResponse

if TYPE_CHECKING:
    from oneapi.options import OptionSnapshot
    from relay.auth import KeyInfo, UserInfo

logger = logging.getLogger(__name__)

R = TypeVar("R", bound=Response | StreamResponse)

OPTION = "GroupRateLimits"
LIMIT_NAMES = ("rpm", "tpm", "concurrency")
MAX_LIMIT = 2**31 - 1  # the key columns are INTEGER
WINDOW_US = 60_000_000  # a minute, in microseconds: the unit of every time in the store
# A slot not renewed for this long belongs to a node that died; renewed every third of it.
SLOT_TTL_SECONDS = env_int("RATE_LIMIT_SLOT_TTL", 60, minimum=3)
# Kinds of refusal, as the stores report them.
RPM, TPM, CONCURRENCY = 1, 2, 3
# A store's answer: [allowed, refused subject (1-based, 0 = none), kind, used, retry ms],
# then per subject [rpm remaining, rpm reset ms, tpm used, tpm reset ms, concurrency used].
HEAD, PER_SUBJECT = 5, 5


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    rpm: int = 0
    tpm: int = 0
    concurrency: int = 0  # 0 = unlimited, for each

    def __bool__(self) -> bool:
        return bool(self.rpm or self.tpm or self.concurrency)


@dataclass(frozen=True)
class Subject:
    """Who a set of limits counts: `ident` names its state in the store, `label` its
    messages."""

    ident: str
    label: str
    limits: Limits


def limits_from(entry: Any) -> Limits:
    """One group's `{"rpm": 60, "tpm": 100000, "concurrency": 5}`; absent means 0."""
    if not isinstance(entry, dict):
        raise ValueError("每个分组的值必须是 JSON 对象")
    unknown = set(entry) - set(LIMIT_NAMES)
    if unknown:
        raise ValueError(f"未知的限制项：{', '.join(sorted(unknown))}")
    values = {}
    for name in LIMIT_NAMES:
        value = entry.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT:
            raise ValueError(f"{name} 必须是 0 到 {MAX_LIMIT} 之间的整数")
        values[name] = value
    return Limits(**values)


def validate_group_limits(raw: str) -> None:
    """The option's shape, for the options API; raises ValueError with the reason."""
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise ValueError(f"不是合法的 JSON：{error}") from None
    if not isinstance(parsed, dict):
        raise ValueError("必须是分组名到 {rpm, tpm, concurrency} 的 JSON 对象")
    for group, entry in parsed.items():
        try:
            limits_from(entry)
        except ValueError as error:
            raise ValueError(f"分组 {group}：{error}") from None


def parse_group_limits(raw: str) -> dict[str, Limits]:
    """Lenient (a stored value predates validation): malformed entries limit nothing."""
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    groups = {}
    for group, entry in parsed.items():
        try:
            limits = limits_from(entry)
        except ValueError:
            continue
        if limits:
            groups[group] = limits
    return groups


def group_limits(options: OptionSnapshot, group: str) -> Limits | None:
    # Parsed once per options snapshot, not per request.
    groups: dict[str, Limits] = options.parsed(OPTION, "rate-limits", parse_group_limits)
    return groups.get(group)


def subjects_for(key: KeyInfo, user: UserInfo, options: OptionSnapshot) -> tuple[Subject, ...]:
    subjects = []
    own = Limits(key.rpm_limit, key.tpm_limit, key.concurrency_limit)
    if own:
        subjects.append(Subject(f"key:{key.id}", f"key #{key.id}", own))
    group = group_limits(options, user.group)
    if group:
        subjects.append(Subject(f"user:{user.id}", f"group {user.group} (user #{user.id})", group))
    return tuple(subjects)


def ticket_for(key: KeyInfo, user: UserInfo, options: OptionSnapshot) -> Ticket | None:
    """The request's ticket, or None when nothing limits it (then no store is touched)."""
    subjects = subjects_for(key, user, options)
    return Ticket(subjects) if subjects else None


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class SubjectState:
    rpm_remaining: int
    rpm_reset_ms: int
    tpm_used: int
    tpm_reset_ms: int
    concurrency_used: int


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    refused: int  # index into the subjects, -1 when allowed
    kind: int
    used: int
    retry_ms: int  # -1: waiting cannot help (a prompt larger than the limit)
    states: tuple[SubjectState, ...]

    @classmethod
    def parse(cls, values: Sequence[Any]) -> Verdict:
        numbers = [int(v) for v in values]
        states = tuple(
            SubjectState(*numbers[start : start + PER_SUBJECT])
            for start in range(HEAD, len(numbers), PER_SUBJECT)
        )
        return cls(numbers[0] == 1, numbers[1] - 1, numbers[2], numbers[3], numbers[4], states)


def duration_text(ms: int) -> str:
    """OpenAI's (Go's) durations: `120ms`, `1s`, `1.5s`, `6m0s`."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    text = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return text


def rate_headers(subjects: Sequence[Subject], verdict: Verdict, want: int) -> HeaderList:
    """OpenAI's `x-ratelimit-*` headers, for the tightest subject of each kind."""
    headers: HeaderList = []
    pairs = list(zip(subjects, verdict.states, strict=True))
    requests = [
        (s.limits.rpm, st.rpm_remaining, st.rpm_reset_ms) for s, st in pairs if s.limits.rpm
    ]
    tokens = [
        (s.limits.tpm, max(s.limits.tpm - st.tpm_used - want, 0), st.tpm_reset_ms)
        for s, st in pairs
        if s.limits.tpm
    ]
    for suffix, candidates in ((b"requests", requests), (b"tokens", tokens)):
        if candidates:
            limit, remaining, reset = min(candidates, key=lambda c: c[1])
            headers += [
                (b"x-ratelimit-limit-" + suffix, str(limit).encode()),
                (b"x-ratelimit-remaining-" + suffix, str(remaining).encode()),
                (b"x-ratelimit-reset-" + suffix, duration_text(reset).encode()),
            ]
    return headers


def refusal(
    subject: Subject, verdict: Verdict, model: str, want: int, headers: HeaderList
) -> RelayError:
    """OpenAI's 429 for the limit that refused, with its wording."""
    where = f"{model} in {subject.label}"
    limits = subject.limits
    if verdict.kind == TPM and verdict.retry_ms < 0:
        return RelayError(
            429,
            f"Request too large for {where} on tokens per min (TPM): Limit {limits.tpm}, "
            f"Requested {want}. The input or output tokens must be reduced in order to run "
            "successfully.",
            type="tokens",
            code="rate_limit_exceeded",
            headers=headers,
        )
    kinds = {
        RPM: ("requests per min (RPM)", limits.rpm, 1, "requests"),
        TPM: ("tokens per min (TPM)", limits.tpm, want, "tokens"),
        CONCURRENCY: ("concurrent requests", limits.concurrency, 1, "requests"),
    }
    what, limit, requested, kind = kinds[verdict.kind]
    wait = max(verdict.retry_ms, 1)
    return RelayError(
        429,
        f"Rate limit reached for {where} on {what}: Limit {limit}, Used {verdict.used}, "
        f"Requested {requested}. Please try again in {duration_text(wait)}.",
        type=kind,
        code="rate_limit_exceeded",
        headers=[
            (b"retry-after", str(math.ceil(wait / 1000)).encode()),
            (b"retry-after-ms", str(wait).encode()),
            *headers,
        ],
    )


# --------------------------------------------------------------------------- stores


class Store(Protocol):
    errors: tuple[type[Exception], ...]  # what a call raises when the store is unreachable

    async def check(self, subjects: Sequence[Subject], slot: str, want: int) -> Sequence[Any]: ...

    async def release(self, subjects: Sequence[Subject], slot: str, tokens: int) -> None: ...


def _ms(us: float) -> int:
    return math.ceil(us / 1000)


class MemoryStore:
    """This process's counters (a single node); the same arithmetic as the Lua scripts."""

    errors: tuple[type[Exception], ...] = ()

    # Forget idle subjects after this many checks, so dropped keys do not pile up.
    SWEEP_EVERY = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tats: dict[str, float] = {}
        self._slots: dict[str, set[str]] = {}
        self._checks = 0

    def _tat(self, name: str, now: float) -> float:
        return max(self._tats.get(name, 0.0), now)

    async def check(self, subjects: Sequence[Subject], slot: str, want: int) -> list[int]:
        with self._lock:
            return self._check(subjects, slot, want, time.monotonic_ns() / 1000)

    def _check(self, subjects: Sequence[Subject], slot: str, want: int, now: float) -> list[int]:
        self._checks += 1
        if self._checks % self.SWEEP_EVERY == 0:
            self._sweep(now)
        out = [1, 0, 0, 0, 0]
        rpm_next: dict[int, float] = {}

        def refuse(index: int, kind: int, used: int, retry_ms: int) -> None:
            if out[0] == 1:
                out[:HEAD] = [0, index + 1, kind, used, retry_ms]

        for index, subject in enumerate(subjects):
            limits = subject.limits
            state = [0, 0, 0, 0, 0]
            if limits.rpm:
                step = max(WINDOW_US // limits.rpm, 1)
                tat = self._tat(subject.ident + ":rpm", now)
                if tat + step - now > WINDOW_US:
                    refuse(index, RPM, limits.rpm, _ms(tat + step - now - WINDOW_US))
                    state[1] = _ms(tat - now)
                else:
                    rpm_next[index] = tat + step
                    state[0] = int((WINDOW_US - (tat + step - now)) // step)
                    state[1] = _ms(tat + step - now)
            if limits.tpm:
                tat = self._tat(subject.ident + ":tpm", now)
                used = math.ceil((tat - now) / WINDOW_US * limits.tpm)
                state[2], state[3] = used, _ms(tat - now)
                if want > limits.tpm:
                    refuse(index, TPM, used, -1)
                elif used + want > limits.tpm:
                    excess = used + want - limits.tpm
                    refuse(index, TPM, used, _ms(excess / limits.tpm * WINDOW_US))
            if limits.concurrency:
                held = len(self._slots.get(subject.ident, ()))
                state[4] = held
                if held >= limits.concurrency:
                    refuse(index, CONCURRENCY, held, 1000)
            out += state
        if out[0] == 1:
            for index, subject in enumerate(subjects):
                if index in rpm_next:
                    self._tats[subject.ident + ":rpm"] = rpm_next[index]
                if subject.limits.concurrency:
                    self._slots.setdefault(subject.ident, set()).add(slot)
                    out[HEAD + index * PER_SUBJECT + 4] += 1
        return out

    async def release(self, subjects: Sequence[Subject], slot: str, tokens: int) -> None:
        now = time.monotonic_ns() / 1000
        with self._lock:
            for subject in subjects:
                tpm = subject.limits.tpm
                if tpm and tokens > 0:
                    name = subject.ident + ":tpm"
                    tat = self._tat(name, now) + tokens / tpm * WINDOW_US
                    self._tats[name] = min(tat, now + 2 * WINDOW_US)
                if subject.limits.concurrency:
                    self._slots.get(subject.ident, set()).discard(slot)

    def _sweep(self, now: float) -> None:
        for name in [name for name, tat in self._tats.items() if tat <= now]:
            del self._tats[name]
        for ident in [ident for ident, slots in self._slots.items() if not slots]:
            del self._slots[ident]


_memory = MemoryStore()
_redis_stores: dict[tuple[str, str], Store] = {}
_stores_lock = threading.Lock()


def store() -> Store:
    """Redis when configured (shared by every node), else this process's memory."""
    url = settings.REDIS_CONN_STRING
    if not url:
        return _memory
    key = (url, settings.CACHE_KEY_PREFIX)
    with _stores_lock:
        found = _redis_stores.get(key)
        if found is None:
            # Imported here: a node without Redis never loads the client (~7 MB).
            from relay.ratelimit_redis import RedisStore

            found = _redis_stores[key] = RedisStore(url, settings.CACHE_KEY_PREFIX)
        return found


# --------------------------------------------------------------------------- requests


class Ticket:
    """One request's place in its subjects' limits: taken before its first attempt, given
    back (with the tokens it used) when its response has ended in whatever way."""

    def __init__(self, subjects: tuple[Subject, ...]) -> None:
        self.subjects = subjects
        self.slot = uuid.uuid4().hex if any(s.limits.concurrency for s in subjects) else ""
        self.tokens = 0
        self.headers: HeaderList = []
        self._held: Store | None = None

    def add_tokens(self, tokens: int) -> None:
        """Called when the request settles; counted in TPM when the ticket is released."""
        self.tokens += max(tokens, 0)

    async def acquire(self, model: str, prompt_tokens: int) -> None:
        """Raises OpenAI's 429 when a limit is reached. A Redis failure lets the request
        through unlimited: the gateway serving beats the limits holding."""
        want = max(prompt_tokens, 1)
        current = store()
        try:
            verdict = Verdict.parse(await current.check(self.subjects, self.slot, want))
        except current.errors as error:
            logger.warning("rate limits: check failed, request not limited: %r", error)
            return
        self.headers = rate_headers(self.subjects, verdict, want)
        if not verdict.allowed:
            raise refusal(self.subjects[verdict.refused], verdict, model, want, self.headers)
        self._held = current

    async def release(self) -> None:
        held, self._held = self._held, None
        if held is None:
            return
        try:
            await held.release(self.subjects, self.slot, self.tokens)
        except held.errors as error:
            # The slot expires on its own (no longer renewed); these tokens go uncounted.
            logger.warning("rate limits: release failed: %r", error)

    async def close(self) -> None:
        # Shielded: a cancelled request (client gone) must still give its slot back.
        await asyncio.shield(self.release())


async def enforce(
    ticket: Ticket,
    model: str,
    prompt_tokens: int,
    run: Callable[[], Awaitable[R]],
) -> R:
    """Run a request under its ticket: refused before anything is sent upstream when over a
    limit; the headers go on every answer; the ticket goes back before the client can see
    the answer end (so its next request finds the slot free and the tokens counted), or when
    the request failed."""
    await ticket.acquire(model, prompt_tokens)
    try:
        response = await run()
    except RelayError as error:
        error.headers.extend(ticket.headers)
        await ticket.close()
        raise
    except BaseException:
        await ticket.close()
        raise
    response.headers.extend(ticket.headers)
    if isinstance(response, StreamResponse):
        response.frames = _frames_then_release(response.frames, ticket)
        # A stream whose frames never started (the client left at once) ends here only.
        response.on_close = _then_release(response.on_close, ticket)
    else:
        await ticket.close()  # a whole body: settled already, nothing left to hold
    return response


async def _frames_then_release(
    frames: AsyncIterator[bytes], ticket: Ticket
) -> AsyncIterator[bytes]:
    """The stream's frames; once they end (or break off), the stream's own cleanup settles
    its tokens and then the ticket goes back, all before the body's final chunk is sent."""
    try:
        async for frame in frames:
            yield frame
    finally:
        try:
            close = getattr(frames, "aclose", None)
            if close is not None:
                await close()
        finally:
            await ticket.close()


def _then_release(
    on_close: Callable[[], Awaitable[None]] | None, ticket: Ticket
) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        try:
            if on_close is not None:
                await on_close()  # a stream settles here: its tokens reach the ticket first
        finally:
            await ticket.close()

    return close
