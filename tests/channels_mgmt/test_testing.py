from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.test import override_settings

from billing.models import Log, LogType
from channels_mgmt import tasks, testing
from channels_mgmt.models import Channel, ChannelStatus
from channels_mgmt.selection import routing_table
from oneapi import options
from relay.catalog import ChannelType
from tests.conftest import child_env, free_port, stop_process
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.django_db

KEY = "sk-upstream"


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY, reply="gpt-4o-mini") as fake:
        yield fake


def channel_on(upstream: FakeOpenAI, **fields: object) -> Channel:
    defaults: dict[str, object] = {
        "base_url": upstream.base_url,
        "key": KEY,
        "models": "gpt-4o-mini,gpt-3.5-turbo",
    }
    return make_channel(**{**defaults, **fields})


def routed(channel_id: int, model: str = "gpt-4o-mini") -> bool:
    return any(c.id == channel_id for c in routing_table().candidates.get(("default", model), []))


def test_success_sends_the_test_prompt_and_records_time_and_log(upstream: FakeOpenAI) -> None:
    channel = channel_on(upstream)
    before = int(time.time())

    result = testing.test_channel(channel.pk)

    assert result.success is True
    assert result.message == "gpt-4o-mini"
    assert result.model == "gpt-4o-mini"
    assert result.seconds > 0
    sent = upstream.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": settings.TEST_PROMPT}],
    }
    channel.refresh_from_db()
    assert channel.response_time == int(result.seconds * 1000)
    assert channel.test_time >= before
    log = Log.objects.get()
    assert log.type == LogType.TEST
    assert log.channel_id == channel.pk
    assert log.model_name == "gpt-4o-mini"
    assert log.quota == 0
    assert log.content == f"渠道 {channel.name} 测试成功，响应：gpt-4o-mini"
    # Nothing is billed: no quota moves on the channel either.
    assert channel.used_quota == 0


@pytest.mark.parametrize(
    ("models", "test_model", "requested", "expected"),
    [
        ("a,b", "", "b", "b"),
        ("a,b", "", "not-served", "a"),
        ("a,b", "", None, "a"),
        ("a,b", "t", None, "t"),
        ("a,b", "t", "b", "b"),
        ("", "", None, testing.DEFAULT_TEST_MODEL),
    ],
)
def test_model_choice(models: str, test_model: str, requested: str | None, expected: str) -> None:
    channel = make_channel(models=models, test_model=test_model)
    assert testing.choose_model(channel, requested) == expected


def test_requested_model_goes_through_the_model_mapping(upstream: FakeOpenAI) -> None:
    channel = channel_on(upstream, model_mapping='{"gpt-3.5-turbo": "gpt-4o"}')

    result = testing.test_channel(channel.pk, "gpt-3.5-turbo")

    assert result.success is True
    assert result.model == "gpt-3.5-turbo"
    assert upstream.last_request.json["model"] == "gpt-4o"
    assert Log.objects.get().model_name == "gpt-4o"


def test_the_forced_system_prompt_is_sent(upstream: FakeOpenAI) -> None:
    channel = channel_on(upstream, system_prompt="Answer tersely.")

    testing.test_channel(channel.pk)

    messages = upstream.last_request.json["messages"]
    assert messages[0] == {"role": "system", "content": "Answer tersely."}
    assert messages[1]["content"] == settings.TEST_PROMPT


def test_upstream_error_fails_with_status_and_message(upstream: FakeOpenAI) -> None:
    channel = channel_on(upstream, response_time=1234)
    upstream.scenario = "error_500"

    result = testing.test_channel(channel.pk)

    assert result.success is False
    assert result.seconds == 0
    assert result.message.startswith("http status code: 500, error message: The server had")
    channel.refresh_from_db()
    assert channel.response_time == 0
    assert channel.test_time > 0
    assert channel.status == ChannelStatus.ENABLED
    log = Log.objects.get()
    assert log.type == LogType.TEST
    assert log.content.startswith(f"渠道 {channel.name} 测试失败，错误：http status code: 500")


def test_a_wrong_key_disables_the_channel_when_auto_disable_is_on(upstream: FakeOpenAI) -> None:
    options.set_option("AutomaticDisableChannelEnabled", "true")
    channel = channel_on(upstream, key="sk-wrong")
    assert routed(channel.pk)

    result = testing.test_channel(channel.pk)

    assert result.success is False
    assert "http status code: 401" in result.message
    channel.refresh_from_db()
    assert channel.status == ChannelStatus.AUTO_DISABLED
    assert not routed(channel.pk)


def test_a_wrong_key_leaves_the_channel_alone_when_auto_disable_is_off(
    upstream: FakeOpenAI,
) -> None:
    channel = channel_on(upstream, key="sk-wrong")

    assert testing.test_channel(channel.pk).success is False

    channel.refresh_from_db()
    assert channel.status == ChannelStatus.ENABLED
    assert routed(channel.pk)


def test_insufficient_quota_disables_but_a_rate_limit_does_not(upstream: FakeOpenAI) -> None:
    options.set_option("AutomaticDisableChannelEnabled", "true")
    limited = channel_on(upstream)
    broke = channel_on(upstream)

    upstream.scenario = "error_429"
    testing.test_channel(limited.pk)
    upstream.scenario = "insufficient_quota"
    testing.test_channel(broke.pk)

    limited.refresh_from_db()
    broke.refresh_from_db()
    assert limited.status == ChannelStatus.ENABLED
    assert broke.status == ChannelStatus.AUTO_DISABLED


def test_a_manually_disabled_channel_stays_manually_disabled(upstream: FakeOpenAI) -> None:
    options.set_option("AutomaticDisableChannelEnabled", "true")
    channel = channel_on(upstream, key="sk-wrong", status=ChannelStatus.MANUALLY_DISABLED)

    testing.test_channel(channel.pk)

    channel.refresh_from_db()
    assert channel.status == ChannelStatus.MANUALLY_DISABLED


def test_a_type_without_adaptor_fails_without_a_request(upstream: FakeOpenAI) -> None:
    options.set_option("AutomaticDisableChannelEnabled", "true")
    channel = channel_on(upstream, type=ChannelType.PROXY)  # raw proxy only: no chat adaptor

    result = testing.test_channel(channel.pk)

    assert result.success is False
    assert "has no adaptor" in result.message
    assert upstream.requests == []
    channel.refresh_from_db()
    assert channel.status == ChannelStatus.ENABLED


def test_an_unreachable_upstream_fails(db: None) -> None:
    channel = make_channel(base_url=f"http://127.0.0.1:{free_port()}", models="gpt-4o-mini")

    result = testing.test_channel(channel.pk)

    assert result.success is False
    assert not result.message.startswith("http status code")
    assert Log.objects.get().content.startswith(f"渠道 {channel.name} 测试失败")


def test_a_hung_upstream_times_out(upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "TEST_TIMEOUT_SECONDS", 0.3)
    upstream.scenario = "timeout"
    channel = channel_on(upstream)

    started = time.monotonic()
    result = testing.test_channel(channel.pk)

    assert time.monotonic() - started < 5
    assert result.success is False
    assert "timed out" in result.message


def test_missing_channel_raises(db: None) -> None:
    with pytest.raises(Channel.DoesNotExist):
        testing.test_channel(999_999)


# ---------------------------------------------------------------------- all channels


def test_all_disables_dead_and_enables_recovered_channels(upstream: FakeOpenAI) -> None:
    options.set_option("AutomaticDisableChannelEnabled", "true")
    options.set_option("AutomaticEnableChannelEnabled", "true")
    healthy = channel_on(upstream)
    dead = channel_on(upstream, key="sk-wrong")
    recovered = channel_on(upstream, status=ChannelStatus.AUTO_DISABLED)
    manual = channel_on(upstream, status=ChannelStatus.MANUALLY_DISABLED)

    summary = testing.test_all_channels("all")

    assert summary.tested == 4
    assert summary.failed == 1
    assert summary.disabled == [dead.pk]
    assert summary.enabled == [recovered.pk]
    statuses = dict(Channel.objects.values_list("pk", "status"))
    assert statuses == {
        healthy.pk: ChannelStatus.ENABLED,
        dead.pk: ChannelStatus.AUTO_DISABLED,
        recovered.pk: ChannelStatus.ENABLED,
        manual.pk: ChannelStatus.MANUALLY_DISABLED,
    }
    assert routed(recovered.pk) and not routed(dead.pk)
    assert Log.objects.filter(type=LogType.TEST).count() == 4


def test_all_changes_nothing_with_both_options_off(upstream: FakeOpenAI) -> None:
    dead = channel_on(upstream, key="sk-wrong")
    recovered = channel_on(upstream, status=ChannelStatus.AUTO_DISABLED)

    summary = testing.test_all_channels("all")

    assert (summary.disabled, summary.enabled) == ([], [])
    statuses = dict(Channel.objects.values_list("pk", "status"))
    assert statuses == {dead.pk: ChannelStatus.ENABLED, recovered.pk: ChannelStatus.AUTO_DISABLED}


def test_disabled_scope_tests_only_disabled_channels(upstream: FakeOpenAI) -> None:
    enabled = channel_on(upstream)
    auto = channel_on(upstream, status=ChannelStatus.AUTO_DISABLED)
    manual = channel_on(upstream, status=ChannelStatus.MANUALLY_DISABLED)

    summary = testing.test_all_channels("disabled")

    assert summary.tested == 2
    assert len(upstream.requests) == 2
    tested = set(Log.objects.values_list("channel_id", flat=True))
    assert tested == {auto.pk, manual.pk}
    enabled.refresh_from_db()
    assert enabled.test_time == 0


def test_slow_channels_are_disabled_only_with_auto_disable(upstream: FakeOpenAI) -> None:
    options.set_option("ChannelDisableThreshold", "0.1")
    upstream.hang_seconds = 0.3
    upstream.scenario = "timeout"  # answers normally after hang_seconds
    slow = channel_on(upstream)

    testing.test_all_channels("all")
    slow.refresh_from_db()
    assert slow.status == ChannelStatus.ENABLED

    options.set_option("AutomaticDisableChannelEnabled", "true")
    summary = testing.test_all_channels("all")
    slow.refresh_from_db()
    assert summary.disabled == [slow.pk]
    assert slow.status == ChannelStatus.AUTO_DISABLED


def test_all_pauses_polling_interval_between_channels(
    upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(testing, "_pause", pauses.append)
    for _ in range(3):
        channel_on(upstream)

    with override_settings(POLLING_INTERVAL=7):
        testing.test_all_channels("all")

    assert pauses == [7, 7]


def test_all_rejects_an_unknown_scope(db: None) -> None:
    with pytest.raises(ValueError):
        testing.test_all_channels("everything")


@pytest.mark.parametrize("redis", [False, True], ids=["file-lock", "cache-lock"])
def test_two_runs_never_overlap(upstream: FakeOpenAI, redis: bool) -> None:
    channel_on(upstream)
    with override_settings(REDIS_ENABLED=redis):
        held = testing.RunLock()
        assert held.acquire()
        try:
            assert testing.is_running()
            with pytest.raises(testing.TestsAlreadyRunning):
                testing.test_all_channels("all")
            assert tasks.test_all_channels_task("all") == {"skipped": testing.ALREADY_RUNNING}
            assert upstream.requests == []
        finally:
            held.release()
        assert not testing.is_running()
        assert testing.test_all_channels("all").tested == 1
        assert not testing.is_running()


def test_the_lock_is_released_when_a_run_fails(
    upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel_on(upstream)

    def explode(channel: Channel, requested_model: str | None = None) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(testing, "check_channel", explode)
    with pytest.raises(RuntimeError):
        testing.test_all_channels("all")
    assert not testing.is_running()


def test_celery_task_runs_the_whole_test(upstream: FakeOpenAI) -> None:
    channel_on(upstream)
    channel_on(upstream, key="sk-wrong")

    assert tasks.test_all_channels_task("all") == {
        "tested": 2,
        "failed": 1,
        "disabled": [],
        "enabled": [],
    }


@pytest.mark.integration
def test_a_real_worker_runs_the_queued_test(
    upstream: FakeOpenAI, tmp_path: Path, transactional_db: None
) -> None:
    """The path the admin API takes: queued on the embedded broker, run by a worker process
    (its own event loop for the upstream call, its own database connection)."""
    for folder in ("queue", "processed", "results", "control"):
        (tmp_path / "celery" / folder).mkdir(parents=True)
    channel = channel_on(upstream, status=ChannelStatus.AUTO_DISABLED)
    options.set_option("AutomaticEnableChannelEnabled", "true")
    env = child_env(DATA_DIR=str(tmp_path), REDIS_CONN_STRING="")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "oneapi",
            "worker",
            "--pool",
            "solo",
            "--hostname",
            f"test-{uuid.uuid4().hex[:8]}@%h",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        queue = tmp_path / "celery" / "queue"
        client = Celery(
            "test-client",
            broker="filesystem://",
            backend=f"file://{tmp_path / 'celery' / 'results'}",
            broker_transport_options={
                "data_folder_in": str(queue),
                "data_folder_out": str(queue),
                "processed_folder": str(tmp_path / "celery" / "processed"),
                "control_folder": str(tmp_path / "celery" / "control"),
            },
        )
        result = client.send_task("channels_mgmt.test_all_channels", args=["disabled"])
        summary = result.get(timeout=60)
    finally:
        stop_process(worker)

    assert summary == {"tested": 1, "failed": 0, "disabled": [], "enabled": [channel.pk]}
    channel.refresh_from_db()
    assert channel.status == ChannelStatus.ENABLED
    assert channel.response_time > 0
    assert Log.objects.filter(type=LogType.TEST, channel_id=channel.pk).count() == 1
