"""The periodic jobs for real: Celery beat and workers on Redis, a real SMTP server (aiosmtpd)
and a real webhook receiver standing in for Message Pusher.

The workers load the job modules with `--include` and beat gets a test schedule (every
second), so this runs whether or not the settings' own schedule names these jobs yet.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from celery import Celery

from accounts.models import Role
from billing.models import Log, LogType
from channels_mgmt.testing import ALREADY_RUNNING
from oneapi.options import set_option
from tests.conftest import child_env, free_port, require_service, stop_process
from tests.factories import make_channel, make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.webhook_server import WebhookServer

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/14"
JOB_MODULES = "billing.periodic_tasks,oneapi.notify_tasks"
DAY = 24 * 3600

# beat with a schedule of the test's choosing instead of the settings' one.
BEAT = """
import json, os, sys
from oneapi.celery import app
app.conf.beat_schedule = json.loads(os.environ["TEST_BEAT_SCHEDULE"])
app.start(["beat", "--loglevel", "INFO", "--schedule", sys.argv[1]])
"""


@dataclass
class Inbox:
    port: int
    messages: list[Message] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.arrived:
            self.messages.append(
                message_from_bytes(envelope.original_content, policy=policy.default)
            )
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[Message]:
        with self.arrived:
            return [message for message in self.messages if message["To"] == address]

    def wait_for(self, address: str, timeout: float = 60.0) -> Message:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not self.to(address):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no mail to {address}")
                self.arrived.wait(left)
            return self.to(address)[0]


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.2)


@pytest.fixture
def redis_db() -> Iterator[str]:
    """Database 14, emptied: no broker messages or locks left by an earlier run."""
    require_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox(free_port())
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in reversed(started):  # beat first: nothing new is queued while workers stop
        stop_process(process)


@pytest.fixture
def env(redis_db: str, transactional_db: None) -> dict[str, str]:
    return child_env(
        REDIS_CONN_STRING=redis_db,
        CACHE_KEY_PREFIX=f"beat-jobs-{uuid.uuid4().hex[:8]}",
        LOG_RETENTION_DAYS="1",
    )


@pytest.fixture
def client(redis_db: str) -> Iterator[Celery]:
    app = Celery("test-client", broker=redis_db, backend=redis_db)
    yield app
    app.close()


def start_worker(env: dict[str, str], processes: list[subprocess.Popen]) -> str:
    hostname = f"jobs-{uuid.uuid4().hex[:8]}@test"
    processes.append(
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "oneapi",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--hostname",
                hostname,
                "--include",
                JOB_MODULES,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    return hostname


def start_beat(
    env: dict[str, str], schedule: dict[str, Any], tmp_path: Path, processes: list
) -> None:
    processes.append(
        subprocess.Popen(
            [sys.executable, "-c", BEAT, str(tmp_path / "beat-schedule")],
            env={**env, "TEST_BEAT_SCHEDULE": json.dumps(schedule)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )


def wait_for_workers(client: Celery, hostnames: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = client.control.ping(timeout=1.0) or []
        if set(hostnames) <= {name for reply in replies for name in reply}:
            return
    raise TimeoutError(f"workers {hostnames} did not answer")


def consume_log(age_seconds: int, type_: int = LogType.CONSUME) -> Log:
    return Log.objects.create(type=type_, created_at=int(time.time()) - age_seconds, quota=7)


def test_beat_runs_retention_and_quota_alerts_and_alerts_reach_root(
    env: dict[str, str],
    client: Celery,
    inbox: Inbox,
    hook: WebhookServer,
    processes: list[subprocess.Popen],
    tmp_path: Path,
) -> None:
    # given: the alert paths configured as an admin would
    set_option("SMTPServer", "127.0.0.1")
    set_option("SMTPPort", str(inbox.port))
    set_option("SMTPFrom", "gateway@example.com")
    set_option("ServerAddress", "https://gw.example.com")
    set_option("QuotaRemindThreshold", "1000")
    set_option("MessagePusherAddress", hook.url)
    set_option("MessagePusherToken", "pusher-token")
    make_user(username="root", role=Role.ROOT, email="root@example.com")
    make_user(username="alice", email="alice@example.com", quota=300, used_quota=9700)
    make_user(username="rich", email="rich@example.com", quota=50_000, used_quota=10)
    old = [consume_log(3 * DAY) for _ in range(5)]
    kept = [consume_log(3600), consume_log(3 * DAY, LogType.TOPUP)]

    # when: beat queues both jobs every second for the worker
    start_worker(env, processes)
    start_beat(
        env,
        {
            "prune-logs": {"task": "billing.prune_logs", "schedule": 1.0},
            "send-quota-alerts": {"task": "billing.send_quota_alerts", "schedule": 1.0},
        },
        tmp_path,
        processes,
    )

    # then: the old consume logs go, the rest stay
    wait_until(lambda: not Log.objects.filter(pk__in=[row.pk for row in old]).exists())
    assert set(Log.objects.values_list("pk", flat=True)) == {row.pk for row in kept}

    # and: alice is told once, through the real SMTP server
    reminder = inbox.wait_for("alice@example.com")
    assert reminder["Subject"] == "您的额度即将用尽"
    assert reminder["From"] == "gateway@example.com"
    text = reminder.get_body(preferencelist=("plain",)).get_content()
    assert "剩余额度为 300" in text and "https://gw.example.com/topup" in text

    # when: an alert is queued as the channel monitor queues one
    title, body = "通道「dead」（#7）已被禁用", "通道「dead」（#7）已被禁用，原因：余额不足"
    sent = client.send_task("oneapi.notify_root", args=[title, body]).get(timeout=60)

    # then: it reached Message Pusher and the root user's mailbox
    assert sent == {"email": True, "message_pusher": True}
    [pushed] = hook.wait_for(1)
    assert pushed.json == {
        "title": title,
        "description": body,
        "content": body,
        "token": "pusher-token",
    }
    assert inbox.wait_for("root@example.com")["Subject"] == title

    # and: more beats later, still one reminder (once per crossing), none to the rich user
    time.sleep(3)
    assert len(inbox.to("alice@example.com")) == 1
    assert inbox.to("rich@example.com") == []


def test_two_workers_never_test_channels_at_the_same_time(
    env: dict[str, str], client: Celery, processes: list[subprocess.Popen]
) -> None:
    with FakeOpenAI(api_key="sk-upstream") as upstream:
        # given: a channel whose test takes 3 s, and two idle workers
        upstream.scenario = "timeout"
        upstream.hang_seconds = 3.0
        make_channel(base_url=upstream.base_url, key="sk-upstream", models="gpt-4o-mini")
        hostnames = [start_worker(env, processes), start_worker(env, processes)]
        wait_for_workers(client, hostnames)

        # when: two all-channel runs are queued at once (as two beat ticks or admins would)
        results = [client.send_task("channels_mgmt.test_all_channels", args=["all"]) for _ in "ab"]
        outcomes = [result.get(timeout=60) for result in results]

        # then: one worker tested, the other found the lock held and stood down
        assert sorted(outcomes, key=lambda outcome: "skipped" in outcome) == [
            {"tested": 1, "failed": 0, "disabled": [], "enabled": []},
            {"skipped": ALREADY_RUNNING},
        ]
        assert len(upstream.requests) == 1


def test_beat_tests_channels_and_updates_balances(
    env: dict[str, str],
    hook: WebhookServer,
    processes: list[subprocess.Popen],
    tmp_path: Path,
) -> None:
    from channels_mgmt.models import Channel, ChannelStatus
    from channels_mgmt.services import set_channel_status
    from relay.catalog import ChannelType
    from tests.fakes.balance_upstreams import FakeBalanceProviders

    with (
        FakeOpenAI(api_key="sk-upstream") as dead,
        FakeOpenAI(api_key="sk-upstream") as healed,
        FakeBalanceProviders(api_key="sk-balance") as balances,
    ):
        # given: auto-disable and auto-enable on, alerts to Message Pusher, and three channels:
        # one whose key the upstream refuses, one auto-disabled earlier that works again,
        # and a DeepSeek channel with a balance to read
        set_option("AutomaticDisableChannelEnabled", "true")
        set_option("AutomaticEnableChannelEnabled", "true")
        set_option("MessagePusherAddress", hook.url)
        dead.scenario = "error_401"
        failing = make_channel(name="dead", base_url=dead.base_url, models="gpt-4o-mini")
        recovered = make_channel(name="healed", base_url=healed.base_url, models="gpt-4o-mini")
        set_channel_status(recovered.pk, ChannelStatus.AUTO_DISABLED)
        priced = make_channel(
            name="priced",
            type=ChannelType.DEEPSEEK,
            key="sk-balance",
            base_url=balances.base_url,
            models="deepseek-chat",
        )

        # when: beat runs both channel jobs every two seconds (CHANNEL_TEST_FREQUENCY and
        # CHANNEL_UPDATE_FREQUENCY in minutes are the production spelling of this schedule)
        start_worker(env, processes)
        start_beat(
            env,
            {
                "test-all-channels": {
                    "task": "channels_mgmt.test_all_channels",
                    "schedule": 2.0,
                    "args": ["all"],
                },
                "update-all-balances": {
                    "task": "channels_mgmt.update_all_balances",
                    "schedule": 2.0,
                },
            },
            tmp_path,
            processes,
        )

        def status(channel: Channel) -> int:
            return Channel.objects.values_list("status", flat=True).get(pk=channel.pk)

        # then: the refused channel is disabled, the healed one enabled, the balance stored
        wait_until(lambda: status(failing) == ChannelStatus.AUTO_DISABLED)
        wait_until(lambda: status(recovered) == ChannelStatus.ENABLED)
        wait_until(lambda: Channel.objects.get(pk=priced.pk).balance == 110.5)
        assert Channel.objects.get(pk=recovered.pk).test_time > 0

        # and: root heard about both changes through Message Pusher
        titles = " ".join(received.json["title"] for received in hook.wait_for(2, timeout=60))
        assert "dead" in titles and "healed" in titles
