"""Channel tests (One API's `controller/channel-test.go`, facts §3.8).

A test is one real chat request, `TEST_PROMPT` as the user message, sent through the
channel's own adaptor exactly as the relay would send it. It is timed, written as a type-5
(test) log, and never billed. `test_all_channels` runs every channel (or the disabled ones)
one after the other, disabling the dead or slow and re-enabling the ones that came back.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.cache import cache

from billing.models import Log, LogType
from channels_mgmt.models import Channel, ChannelStatus
from channels_mgmt.selection import channel_info
from channels_mgmt.services import set_channel_status
from oneapi import notify, options
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, UpstreamRequest
from relay.dispatch import channel_adaptor, read_body
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from relay.monitor import should_disable
from relay.request_id import new_request_id
from relay.text import apply_system_prompt, parse_result
from relay.upstream import close_client

logger = logging.getLogger(__name__)

# One API's `buildTestRequest` default, for a channel that lists no model at all.
DEFAULT_TEST_MODEL = "gpt-3.5-turbo"
# A hung upstream must not hold the all-channel run (and its lock) forever; RELAY_TIMEOUT
# may well be 0 (no limit).
TEST_TIMEOUT_SECONDS = 60.0
SCOPES = ("all", "disabled")
ALREADY_RUNNING = "测试已在运行中"
RUN_LOCK_KEY = "channels_mgmt:test_all_channels"
CHAT_PATH = RelayMode.CHAT.upstream_path


@dataclass(frozen=True)
class TestResult:
    """What `GET /api/channel/test/:id` answers: the reply (or the error) and the time."""

    __test__ = False  # not a pytest test class

    success: bool
    message: str
    seconds: float  # 0 when the test failed, as One API
    model: str  # the model tested, before the channel's model mapping


@dataclass(frozen=True)
class Outcome:
    result: TestResult
    elapsed_ms: int  # measured even when the test failed (the slowness rule needs it)
    error: RelayError | None = None
    # Whether the error is the upstream's verdict on the channel (auto-disable may act on it).
    from_upstream: bool = False


class TestsAlreadyRunning(Exception):
    __test__ = False


def choose_model(channel: Channel, requested: str | None) -> str:
    """The requested model if the channel serves it, else its test model, else its first."""
    models = channel.model_list()
    if requested and requested in models:
        return requested
    if channel.test_model:
        return channel.test_model
    return models[0] if models else DEFAULT_TEST_MODEL


def _prepare(channel: Channel, model: str) -> tuple[Adaptor, Attempt, UpstreamRequest]:
    info = channel_info(channel)
    adaptor = channel_adaptor(info)
    actual_model = info.model_mapping.get(model) or model
    payload: dict[str, Any] = {
        "model": actual_model,
        "messages": [{"role": "user", "content": settings.TEST_PROMPT}],
    }
    raw = orjson.dumps(payload)
    body = OpenAIBody(raw, payload)
    apply_system_prompt(body, info.system_prompt)
    request = Request(
        method="POST",
        path=CHAT_PATH,
        query_string=b"",
        headers={"content-type": "application/json"},
        body=body.to_bytes(),
        client_ip="",
        request_id=new_request_id(),
        raw_path=CHAT_PATH,
    )
    attempt = Attempt(info, RelayMode.CHAT, actual_model, False, request)
    return adaptor, attempt, adaptor.build_request(attempt, body)


async def _exchange(adaptor: Adaptor, attempt: Attempt, call: UpstreamRequest) -> tuple[int, bytes]:
    """Runs on a loop of its own (see `_send`), so the client it opens is closed here."""
    try:
        async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
            response = await adaptor.send(attempt, call)
            return response.status_code, await read_body(response)
    except TimeoutError:
        raise UpstreamFailure(
            RelayError(504, f"upstream timed out after {TEST_TIMEOUT_SECONDS:g}s"),
            retryable=True,
            from_upstream=False,
        ) from None
    finally:
        await close_client()


# A new loop in a new thread: called from a request thread under ASGI, plain async_to_sync
# would run on the server's loop, whose shared upstream client must not be closed.
_send = async_to_sync(_exchange, force_new_loop=True)


def _reply_text(adaptor: Adaptor, attempt: Attempt, status: int, raw: bytes) -> str:
    result = parse_result(raw, status)
    translated = adaptor.translate_response(attempt, raw)
    if translated is not raw:
        result = orjson.loads(translated)
    choices = result.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamFailure(RelayError(500, "response has no choices"), retryable=True)
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise UpstreamFailure(RelayError(500, "response content is not string"), retryable=True)
    return content


def _failure_text(failure: UpstreamFailure, answered: bool) -> str:
    error = failure.error
    if answered:  # the upstream answered with an error status
        return f"http status code: {error.status}, error message: {error.message}"
    return error.message


def _run(channel: Channel, model: str) -> Outcome:
    started = time.monotonic()

    def failed(
        message: str, error: RelayError | None = None, from_upstream: bool = False
    ) -> Outcome:
        elapsed_ms = int((time.monotonic() - started) * 1000)
        return Outcome(TestResult(False, message, 0.0, model), elapsed_ms, error, from_upstream)

    answered = False
    try:
        adaptor, attempt, call = _prepare(channel, model)
        try:
            status, raw = _send(adaptor, attempt, call)
        except UpstreamFailure as failure:
            answered = failure.error.code != "do_request_failed" and failure.from_upstream
            raise
        reply = _reply_text(adaptor, attempt, status, raw)
    except UpstreamFailure as failure:
        return failed(_failure_text(failure, answered), failure.error, failure.from_upstream)
    except RelayError as error:  # the adaptor refused the request (a mode it lacks)
        return failed(error.message, error)
    except Exception as error:  # a bug must fail this test, not a whole all-channel run
        logger.exception("testing channel #%s failed unexpectedly", channel.pk)
        return failed(str(error) or type(error).__name__)
    # At least 1 ms: the channel table shows a response time of 0 as "not tested".
    elapsed_ms = max(int((time.monotonic() - started) * 1000), 1)
    return Outcome(TestResult(True, reply, elapsed_ms / 1000, model), elapsed_ms)


def _record(channel: Channel, model: str, outcome: Outcome) -> None:
    """Response time (0 for a failure: the table shows it as untested) and the test log."""
    now = int(time.time())
    response_time = outcome.elapsed_ms if outcome.result.success else 0
    # Not routing state: no cache holds it, so no invalidation is needed.
    Channel.objects.filter(pk=channel.pk).update(response_time=response_time, test_time=now)
    info = channel_info(channel)
    if outcome.result.success:
        content = f"渠道 {channel.name} 测试成功，响应：{outcome.result.message}"
    else:
        content = f"渠道 {channel.name} 测试失败，错误：{outcome.result.message}"
    Log.objects.create(
        type=int(LogType.TEST),
        created_at=now,
        content=content,
        model_name=info.model_mapping.get(model) or model,
        channel_id=channel.pk,
        elapsed_time=outcome.elapsed_ms,
    )


def check_channel(channel: Channel, requested_model: str | None = None) -> Outcome:
    """Test one channel and record it; no status change (the callers' rules differ)."""
    model = choose_model(channel, requested_model)
    outcome = _run(channel, model)
    _record(channel, model, outcome)
    return outcome


def _disable(channel: Channel, reason: str) -> bool:
    if set_channel_status(channel.pk, ChannelStatus.AUTO_DISABLED):
        logger.warning(
            "channel #%s (%s) disabled automatically: %s", channel.pk, channel.name, reason
        )
        notify.channel_disabled(channel.pk, channel.name, reason)
        return True
    return False


def _dead(outcome: Outcome) -> bool:
    """The error says the channel's account is unusable (One API's ShouldDisableChannel)."""
    return outcome.error is not None and outcome.from_upstream and should_disable(outcome.error)


def test_channel(channel_id: int, model: str | None = None) -> TestResult:
    """`GET /api/channel/test/:id`. Raises `Channel.DoesNotExist`."""
    channel = Channel.objects.get(pk=channel_id)
    outcome = check_channel(channel, model)
    if (
        channel.status == ChannelStatus.ENABLED
        and options.get_bool("AutomaticDisableChannelEnabled")
        and _dead(outcome)
    ):
        _disable(channel, outcome.result.message)
    return outcome.result


test_channel.__test__ = False  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- all channels


class RunLock:
    """Keeps two all-channel runs from overlapping, in whatever process they start.

    With Redis it is a Django cache `add` (shared by every node). Without Redis the Django
    cache is per process, and the web server and each Celery worker process are separate
    processes, so a file lock under DATA_DIR stands in; it dies with its process."""

    def __init__(self) -> None:
        self.token = secrets.token_hex(8)
        self._file: IO[bytes] | None = None

    @staticmethod
    def _path() -> Path:
        return Path(settings.DATA_DIR) / "locks" / "channel-test-all.lock"

    @staticmethod
    def ttl() -> int:
        """How long a crashed run keeps the lock: a live run refreshes it before each pause
        and after each test, so twice the longest step is enough."""
        return int(2 * max(TEST_TIMEOUT_SECONDS, settings.POLLING_INTERVAL) + 60)

    def acquire(self) -> bool:
        if settings.REDIS_ENABLED:
            return cache.add(RUN_LOCK_KEY, self.token, timeout=self.ttl())
        path = self._path()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return True

    def refresh(self) -> None:
        if settings.REDIS_ENABLED:
            cache.touch(RUN_LOCK_KEY, self.ttl())

    def release(self) -> None:
        if settings.REDIS_ENABLED:
            if cache.get(RUN_LOCK_KEY) == self.token:
                cache.delete(RUN_LOCK_KEY)
            return
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def is_running() -> bool:
    """Whether an all-channel run holds the lock now."""
    if settings.REDIS_ENABLED:
        return cache.get(RUN_LOCK_KEY) is not None
    probe = RunLock()
    if probe.acquire():
        probe.release()
        return False
    return True


@dataclass
class RunSummary:
    tested: int = 0
    failed: int = 0
    disabled: list[int] = field(default_factory=list)
    enabled: list[int] = field(default_factory=list)


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def _apply_rules(channel: Channel, outcome: Outcome, summary: RunSummary) -> None:
    auto_disable = options.get_bool("AutomaticDisableChannelEnabled")
    if channel.status == ChannelStatus.ENABLED:
        threshold_ms = int(options.get_float("ChannelDisableThreshold") * 1000)
        if threshold_ms > 0 and outcome.elapsed_ms > threshold_ms:
            reason = (
                f"响应时间 {outcome.elapsed_ms / 1000:.2f}s 超过阈值 {threshold_ms / 1000:.2f}s"
            )
            if auto_disable:
                if _disable(channel, reason):
                    summary.disabled.append(channel.pk)
                return
            logger.warning("channel #%s (%s) test too slow: %s", channel.pk, channel.name, reason)
            notify.channel_test_too_slow(channel.pk, channel.name, reason)
        if auto_disable and _dead(outcome) and _disable(channel, outcome.result.message):
            summary.disabled.append(channel.pk)
        return
    # Only what the program disabled comes back by itself; a manual disable stays.
    if (
        channel.status == ChannelStatus.AUTO_DISABLED
        and outcome.result.success
        and options.get_bool("AutomaticEnableChannelEnabled")
        and set_channel_status(channel.pk, ChannelStatus.ENABLED)
    ):
        logger.info("channel #%s (%s) enabled again: its test passed", channel.pk, channel.name)
        notify.channel_enabled(channel.pk, channel.name)
        summary.enabled.append(channel.pk)


def test_all_channels(
    scope: str = "all", on_result: Callable[[Channel, Outcome], None] | None = None
) -> RunSummary:
    """Test channels one at a time, `POLLING_INTERVAL` seconds apart; newest first.
    `on_result` hears of each channel once its test and the status rules are done (the
    console streams the results to the page).

    Raises `TestsAlreadyRunning` when another run holds the lock, `ValueError` on a bad scope.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")
    lock = RunLock()
    if not lock.acquire():
        raise TestsAlreadyRunning(ALREADY_RUNNING)
    summary = RunSummary()
    try:
        channels = Channel.objects.order_by("-id")
        if scope == "disabled":
            channels = channels.filter(
                status__in=[ChannelStatus.MANUALLY_DISABLED, ChannelStatus.AUTO_DISABLED]
            )
        for index, channel_id in enumerate(list(channels.values_list("pk", flat=True))):
            if index and settings.POLLING_INTERVAL:
                lock.refresh()
                _pause(settings.POLLING_INTERVAL)
            # Read now, not at the start: a long run must see edits made meanwhile.
            channel = Channel.objects.filter(pk=channel_id).first()
            if channel is None:
                continue
            outcome = check_channel(channel)
            summary.tested += 1
            summary.failed += 0 if outcome.result.success else 1
            _apply_rules(channel, outcome, summary)
            if on_result is not None:
                on_result(channel, outcome)
            lock.refresh()
    finally:
        lock.release()
    logger.info(
        "channel test finished: %s tested, %s failed, disabled %s, enabled %s",
        summary.tested,
        summary.failed,
        summary.disabled,
        summary.enabled,
    )
    return summary


test_all_channels.__test__ = False  # type: ignore[attr-defined]
