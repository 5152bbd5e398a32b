"""The channel monitor: One API's error rules, the success-rate window (in memory and in
Redis), the consecutive-failure threshold, and the alerts they queue."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync

from channels_mgmt.models import Channel, ChannelStatus
from oneapi import notify_tasks
from oneapi.options import OptionSnapshot, set_option
from relay import monitor, monitor_redis
from relay.errors import RelayError
from tests.conftest import require_service
from tests.factories import make_channel
from tests.relay.conftest import World

REDIS_URL = "redis://127.0.0.1:6379/14"
CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]}

AUTO = OptionSnapshot({"AutomaticDisableChannelEnabled": "true"})
MANUAL = OptionSnapshot({"AutomaticDisableChannelEnabled": "false"})
DEAD = RelayError(401, "Incorrect API key provided", type="invalid_request_error")
FLAKY = RelayError(500, "The server had an error", type="server_error")


@pytest.fixture
def alerts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The alerts queued for a worker, instead of publishing them to the broker."""
    queued: list[tuple[str, str]] = []

    def record(args: tuple[str, str], **options: Any) -> None:
        queued.append(args)

    monkeypatch.setattr(notify_tasks.notify_root_task, "apply_async", record)
    return queued


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor, "_memory_store", monitor.MemoryStore())


@pytest.fixture
def metric(settings: Any) -> Any:
    settings.REDIS_CONN_STRING = ""  # the in-memory store, unless a test asks for `on_redis`
    settings.ENABLE_METRIC = True
    settings.METRIC_QUEUE_SIZE = 4
    settings.METRIC_SUCCESS_RATE_THRESHOLD = 0.5
    return settings


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"test-monitor-{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def on_redis(settings: Any, redis_prefix: str) -> str:
    settings.REDIS_CONN_STRING = REDIS_URL
    settings.CACHE_KEY_PREFIX = redis_prefix
    return redis_prefix


def run(*reports: Callable[[], None]) -> None:
    """Each report on an event loop, as the relay makes them, then wait for its judgement."""

    async def go() -> None:
        for report in reports:
            report()
            await monitor.drain()

    async_to_sync(go)()


def fail(channel: Channel, error: RelayError = FLAKY, options: OptionSnapshot = MANUAL) -> Any:
    return lambda: monitor.report_failure(
        options, channel.pk, channel.name, error, json.loads(channel.config or "{}")
    )


def succeed(channel: Channel, options: OptionSnapshot = MANUAL) -> Any:
    return lambda: monitor.report_success(options, channel.pk, json.loads(channel.config or "{}"))


def status_of(channel: Channel) -> int:
    channel.refresh_from_db()
    return channel.status


# ---------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RelayError(401, "whatever"), True),
        (RelayError(429, "quota", type="insufficient_quota"), True),
        (RelayError(400, "x", code="account_deactivated"), True),
        (RelayError(400, "Your credit balance is too low"), True),
        (RelayError(500, "upstream exploded"), False),
        (RelayError(429, "Rate limit reached", type="requests"), False),
    ],
)
def test_should_disable_follows_one_api(error: RelayError, expected: bool) -> None:
    assert monitor.should_disable(error) is expected


@pytest.mark.parametrize(
    ("config", "needed"),
    [
        (None, 1),
        ({}, 1),
        ({"disable_after_failures": 3}, 3),
        ({"disable_after_failures": "5"}, 5),
        ({"disable_after_failures": 0}, 1),
        ({"disable_after_failures": -2}, 1),
        ({"disable_after_failures": "many"}, 1),
        ({"disable_after_failures": True}, 1),
    ],
)
def test_failures_needed_reads_the_channel_config(config: Any, needed: int) -> None:
    assert monitor.failures_needed(config) == needed


# ---------------------------------------------------------------------- the window itself


def window_verdicts(store: monitor.Store, results: list[bool], window: monitor.Window) -> list:
    verdicts = []
    for success in results:
        if success:
            store.success(7, window, False)
            verdicts.append(None)
        else:
            verdicts.append(store.failure(7, window))
    return verdicts


def test_memory_window_judges_only_when_full_and_then_starts_over() -> None:
    store = monitor.MemoryStore()
    window = monitor.Window(4, 0.5)

    # 3 results: not full, whatever the rate.
    assert window_verdicts(store, [False, False, False], window) == [None, None, None]
    # The 4th fills it: 0 of 4 succeeded, under 50%.
    assert store.failure(7, window) == 0.0
    # Emptied: the next failure starts a new window.
    assert store.failure(7, window) is None


def test_memory_window_rolls_over_the_oldest_results() -> None:
    store = monitor.MemoryStore()
    window = monitor.Window(4, 0.5)

    # Two successes then failures: [T, T, F, F] is exactly 50% (not under); then
    # [T, F, F, F] is 25%.
    verdicts = window_verdicts(store, [True, True, False, False, False], window)

    assert verdicts == [None, None, None, None, 0.25]


def test_redis_window_has_the_same_verdicts(redis_prefix: str) -> None:
    store = monitor_redis.RedisStore(REDIS_URL, redis_prefix)
    window = monitor.Window(4, 0.5)

    verdicts = window_verdicts(store, [True, True, False, False, False, False], window)

    assert verdicts == [None, None, None, None, 0.25, None]
    assert store.client.llen(store.window_key(7)) == 1  # emptied, then the last failure
    assert store.client.ttl(store.window_key(7)) > 0


def test_redis_window_is_shared_by_every_node(redis_prefix: str) -> None:
    node_a = monitor_redis.RedisStore(REDIS_URL, redis_prefix)
    node_b = monitor_redis.RedisStore(REDIS_URL, redis_prefix)
    window = monitor.Window(4, 0.5)

    assert node_a.failure(9, window) is None
    assert node_b.failure(9, window) is None
    assert node_a.failure(9, window) is None
    # The 4th result, from the other node, completes the shared window.
    assert node_b.failure(9, window) == 0.0
    # Only one node got the verdict: the window is gone for both.
    assert node_a.failure(9, window) is None


def test_streaks_count_and_reset(redis_prefix: str) -> None:
    for store in (monitor.MemoryStore(), monitor_redis.RedisStore(REDIS_URL, redis_prefix)):
        assert [store.strike(3) for _ in range(3)] == [1, 2, 3]
        store.success(3, None, True)
        assert store.strike(3) == 1
        store.forget(3)
        assert store.strike(3) == 1


# ---------------------------------------------------------------------- metric disable


@pytest.mark.django_db
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_low_success_rate_disables_even_with_auto_disable_off(
    backend: str, metric: Any, alerts: list, request: pytest.FixtureRequest
) -> None:
    if backend == "redis":
        request.getfixturevalue("on_redis")
    channel = make_channel(name="flaky")

    run(succeed(channel), fail(channel), fail(channel))
    assert status_of(channel) == ChannelStatus.ENABLED  # 3 results: the window is not full

    run(fail(channel))  # 1 of 4 succeeded: 25% < 50%

    assert status_of(channel) == ChannelStatus.AUTO_DISABLED
    assert alerts == [
        (
            f"通道 #{channel.pk} 已被禁用",
            "该渠道在最近 4 次调用中成功率为 25.00%，低于阈值 50.00%，因此被系统自动禁用。",
        )
    ]


@pytest.mark.django_db
def test_a_healthy_rate_keeps_the_channel(metric: Any, alerts: list) -> None:
    channel = make_channel()

    run(*[succeed(channel)] * 3, fail(channel), succeed(channel), fail(channel))

    assert status_of(channel) == ChannelStatus.ENABLED
    assert alerts == []


@pytest.mark.django_db
def test_metric_off_records_nothing(settings: Any, alerts: list) -> None:
    settings.ENABLE_METRIC = False
    channel = make_channel()

    run(*[fail(channel)] * 20)

    assert status_of(channel) == ChannelStatus.ENABLED
    assert monitor._memory_store._windows == {}


@pytest.mark.django_db
def test_a_disable_clears_the_window_for_when_the_channel_comes_back(
    metric: Any, alerts: list
) -> None:
    channel = make_channel()
    run(*[fail(channel)] * 4)
    assert status_of(channel) == ChannelStatus.AUTO_DISABLED
    Channel.objects.filter(pk=channel.pk).update(status=ChannelStatus.ENABLED)

    run(*[fail(channel)] * 3)

    assert status_of(channel) == ChannelStatus.ENABLED
    assert len(alerts) == 1


# ---------------------------------------------------------------------- error-based disable


@pytest.mark.django_db
def test_one_strike_by_default(alerts: list) -> None:
    channel = make_channel(name="dead")

    run(fail(channel, DEAD, AUTO))

    assert status_of(channel) == ChannelStatus.AUTO_DISABLED
    assert alerts == [
        (
            f"通道「dead」（#{channel.pk}）已被禁用",
            f"通道「dead」（#{channel.pk}）已被禁用，原因：Incorrect API key provided",
        )
    ]


@pytest.mark.django_db
def test_error_rules_need_automatic_disable_enabled(alerts: list) -> None:
    channel = make_channel()

    run(fail(channel, DEAD, MANUAL))

    assert status_of(channel) == ChannelStatus.ENABLED
    assert alerts == []


@pytest.mark.django_db
@pytest.mark.parametrize("backend", ["memory", "redis"])
def test_disable_after_failures_needs_that_many_in_a_row(
    backend: str, alerts: list, request: pytest.FixtureRequest
) -> None:
    if backend == "redis":
        request.getfixturevalue("on_redis")
    channel = make_channel(config=json.dumps({"disable_after_failures": 3}))
    dead = fail(channel, DEAD, AUTO)

    run(dead, dead, succeed(channel, AUTO))  # a success breaks the streak
    run(dead, fail(channel, FLAKY, AUTO), dead)  # a 500 neither counts nor resets
    assert status_of(channel) == ChannelStatus.ENABLED

    run(dead)  # the third disabling error in a row

    assert status_of(channel) == ChannelStatus.AUTO_DISABLED
    assert len(alerts) == 1


@pytest.mark.django_db
def test_a_channel_already_disabled_is_not_alerted_twice(alerts: list) -> None:
    channel = make_channel()

    run(fail(channel, DEAD, AUTO), fail(channel, DEAD, AUTO))

    assert status_of(channel) == ChannelStatus.AUTO_DISABLED
    assert len(alerts) == 1


@pytest.mark.django_db
def test_a_dead_error_below_its_streak_still_counts_in_the_window(
    metric: Any, alerts: list
) -> None:
    channel = make_channel(config=json.dumps({"disable_after_failures": 10}))

    run(*[fail(channel, DEAD, AUTO)] * 4)

    assert status_of(channel) == ChannelStatus.AUTO_DISABLED
    assert alerts[0][0] == f"通道 #{channel.pk} 已被禁用"  # by the metric, not the streak


# ---------------------------------------------------------------------- hot path


def test_success_with_nothing_to_record_does_no_work(settings: Any) -> None:
    settings.ENABLE_METRIC = False

    async def go() -> int:
        monitor.report_success(AUTO, 1, {})
        monitor.report_failure(MANUAL, 1, "c", FLAKY, {})
        return len(monitor._pending)

    assert async_to_sync(go)() == 0


def test_memory_success_is_recorded_inline(metric: Any) -> None:
    async def go() -> int:
        monitor.report_success(MANUAL, 5, {})
        return len(monitor._pending)

    assert async_to_sync(go)() == 0
    assert list(monitor._memory_store._windows[5]) == [True]


@pytest.mark.django_db
def test_redis_down_costs_the_result_only(
    settings: Any, metric: Any, alerts: list, caplog: pytest.LogCaptureFixture
) -> None:
    settings.REDIS_CONN_STRING = "redis://127.0.0.1:1/0"  # nothing listens there
    channel = make_channel(config=json.dumps({"disable_after_failures": 2}))

    run(succeed(channel, AUTO), fail(channel), fail(channel, DEAD, AUTO))

    assert status_of(channel) == ChannelStatus.ENABLED
    assert "Redis call failed" in caplog.text


def test_too_many_pending_judgements_are_dropped(
    monkeypatch: pytest.MonkeyPatch, metric: Any, on_redis: str
) -> None:
    monkeypatch.setattr(monitor, "MAX_PENDING", 2)

    async def go() -> int:
        for _ in range(5):
            monitor.report_success(MANUAL, 11, {})
        queued = len(monitor._pending)
        await monitor.drain()
        return queued

    assert async_to_sync(go)() == 2
    assert monitor.store().client.llen(monitor.store().window_key(11)) == 2  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- through the relay


def test_the_relay_feeds_the_window(world: World, metric: Any, alerts: list) -> None:
    set_option("AutomaticDisableChannelEnabled", "false")
    world.upstream.scenario = "error_500"

    for _ in range(4):
        assert world.client.post("/v1/chat/completions", CHAT).status == 500

    world.channel.refresh_from_db()
    assert world.channel.status == ChannelStatus.AUTO_DISABLED
    assert len(alerts) == 1


def test_a_failed_disable_is_logged(
    monkeypatch: pytest.MonkeyPatch, alerts: list, caplog: pytest.LogCaptureFixture
) -> None:
    def locked(*args: Any) -> bool:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(monitor, "set_channel_status", locked)

    run(lambda: monitor.report_failure(AUTO, 1, "c", DEAD, {}))

    assert "judgement failed" in caplog.text
    assert "database is locked" in caplog.text
    assert alerts == []
