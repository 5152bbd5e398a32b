"""Helpers for the relay's end-to-end tests: a real Daphne process, users, keys, channels.

Each Daphne started here gets a data directory of its own (so its usage journal lives apart
from every other test's) and writes its output to a log file there rather than to a pipe
that nobody drains (a full pipe would block the server under load). The database is the
test run's own (`child_env`).
"""

from __future__ import annotations

import itertools
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from accounts.models import User
from billing import pricing
from billing.models import ApiKey, Log
from channels_mgmt.models import Channel
from oneapi import cli
from tests.conftest import child_env, free_port, wait_for_http
from tests.factories import make_channel, make_user
from tests.fakes.openai_upstream import FakeOpenAI

T = TypeVar("T")

# What one chat request costs with FakeOpenAI's default usage (11 prompt, 7 completion
# tokens) on gpt-3.5-turbo: ceil((11 + 7 × 3) × 0.25). Asserted against `text_quota` too.
CHAT_MODEL = "gpt-3.5-turbo"
CHAT_QUOTA = 8
CHAT_MESSAGES = [{"role": "user", "content": "Hello there"}]
# Request ids are One API's: yyyymmddHHMMSS followed by 8 random digits.
REQUEST_ID_PATTERN = r"^\d{22}$"

_probe_numbers = itertools.count(1)


# --------------------------------------------------------------------------- processes


@dataclass
class DaphneServer:
    process: subprocess.Popen[bytes]
    base_url: str
    data_dir: Path
    log_path: Path

    @property
    def journal_dir(self) -> Path:
        return self.data_dir / "journal"

    def journals(self) -> list[Path]:
        return sorted(self.journal_dir.glob("*.jsonl"))

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush anything."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the process to exit on its own; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            self.terminate(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def retire(self) -> None:
        """Stop a module's server after its last test: its final flush lands after that
        test's database cleanup, so the logs it writes then are removed here rather than
        left for the next module's tests to find."""
        self.stop()
        Log.objects.all().delete()


def start_daphne(data_dir: Path, **env: str) -> DaphneServer:
    """Start the gateway's Daphne (`oneapi`'s own command) on a free port; returns once it
    answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = data_dir / f"daphne-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cli.web_command("daphne", "127.0.0.1", port),
            env=child_env(DATA_DIR=str(data_dir), **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = DaphneServer(process, f"http://127.0.0.1:{port}", data_dir, log_path)
    try:
        wait_for_http(server.base_url + "/api/status", timeout=60, process=process)
    except BaseException:
        server.stop()
        raise RuntimeError(f"Daphne did not start; its output:\n{server.output()}") from None
    return server


# --------------------------------------------------------------------------- rows


@dataclass
class World:
    """One user with one key and one channel pointing at a FakeOpenAI."""

    user: User
    key: ApiKey
    channel: Channel
    initial_quota: int
    initial_remain: int
    probe_model: str

    @property
    def api_key(self) -> str:
        return "sk-" + self.key.key

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def refresh(self) -> None:
        for row in (self.user, self.key, self.channel):
            row.refresh_from_db()

    def logs(self) -> list[Log]:
        """This user's logs (ids are never reused, so rows of earlier tests cannot match)."""
        return list(Log.objects.filter(user_id=self.user.pk).order_by("id"))


def make_world(
    upstream: FakeOpenAI,
    *,
    models: str,
    user_quota: int = 10_000_000,
    key_quota: int = 5_000_000,
    unlimited_key: bool = False,
) -> World:
    """Create the rows; the channel also serves a model unique to this world, so a test can
    tell when a long-running server has loaded this channel (`wait_for_routing`)."""
    probe = f"e2e-probe-{next(_probe_numbers)}-{secrets.token_hex(3)}"
    user = make_user(quota=user_quota)
    key = ApiKey.objects.create(
        user=user,
        key=secrets.token_hex(24),
        name="e2e key",
        remain_quota=key_quota,
        unlimited_quota=unlimited_key,
    )
    channel = make_channel(base_url=upstream.base_url, models=f"{models},{probe}")
    return World(user, key, channel, user_quota, key_quota, probe)


def wait_for_routing(base_url: str, world: World, timeout: float = 15.0) -> None:
    """Until the server lists this world's channel models (it reloads on a cache event)."""

    def probe_listed() -> bool:
        response = httpx.get(f"{base_url}/v1/models", headers=world.auth_headers, timeout=5)
        if response.status_code != 200:
            return False
        return world.probe_model in {item["id"] for item in response.json()["data"]}

    wait_until(probe_listed, timeout=timeout, what="the server to load the new channel")


# --------------------------------------------------------------------------- polling


def wait_until(check: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def wait_for_log_count(user_id: int, count: int, timeout: float = 10.0) -> list[Log]:
    """The user's logs once at least `count` are in the database (then exactly `count`)."""

    def enough() -> list[Log] | None:
        logs = list(Log.objects.filter(user_id=user_id).order_by("id"))
        return logs if len(logs) >= count else None

    logs = wait_until(enough, timeout=timeout, what=f"{count} logs of user #{user_id}")
    assert len(logs) == count, [(log.request_id, log.quota) for log in logs]
    return logs


# --------------------------------------------------------------------------- prices


def text_quota(model: str, prompt_tokens: int, completion_tokens: int) -> int:
    """One API's text charge for the default group (ratio 1) on an OpenAI channel."""
    ratio = pricing.model_ratio(model, 1) * pricing.group_ratio("default")
    return pricing.text_quota(
        prompt_tokens, completion_tokens, ratio, pricing.completion_ratio(model, 1)
    )


def assert_billed(world: World, expected: dict[str, int], timeout: float = 10.0) -> None:
    """Exactly one log per request id in `expected` (with that quota) and no other log; the
    user, key and channel rows were charged exactly the sum."""
    logs = wait_for_log_count(world.user.pk, len(expected), timeout=timeout)
    assert {log.request_id: log.quota for log in logs} == expected
    total = sum(expected.values())
    world.refresh()
    assert sum(log.quota for log in logs) == total
    assert world.user.used_quota == total
    assert world.initial_quota - world.user.quota == total
    assert world.user.request_count == len(expected)
    assert world.key.used_quota == total
    assert world.key.request_count == len(expected)
    if world.key.unlimited_quota:
        assert world.key.remain_quota == world.initial_remain
    else:
        assert world.initial_remain - world.key.remain_quota == total
    assert world.channel.used_quota == total
    assert world.channel.request_count == len(expected)


def chat_body(**extra: object) -> dict[str, object]:
    return {"model": CHAT_MODEL, "messages": CHAT_MESSAGES, **extra}


def post_chat(base_url: str, world: World, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json=chat_body(**extra),
        headers=world.auth_headers,
        timeout=30,
    )
