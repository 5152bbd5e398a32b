from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from accounts.models import User
from billing.models import ApiKey
from channels_mgmt.models import Channel
from relay import runtime as relay_runtime_module
from relay.runtime import Runtime
from tests.factories import make_channel, make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.relay_harness import RelayClient

KEY = "a" * 48


@pytest.fixture
def relay_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """This test's ledger and journal, flushed by hand (no background threads)."""
    runtime = Runtime(tmp_path / "journal", interval=3600)
    relay_runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        relay_runtime_module.install(None)
        runtime.journal.close()


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


@dataclass
class World:
    user: User
    key: ApiKey
    channel: Channel
    client: RelayClient
    runtime: Runtime
    upstream: FakeOpenAI

    def refresh(self) -> None:
        """Apply the journal, then reload the rows."""
        self.runtime.flush()
        for row in (self.user, self.key, self.channel):
            row.refresh_from_db()


@pytest.fixture
def world(db: None, relay_runtime: Runtime, upstream: FakeOpenAI) -> World:
    user = make_user(quota=10_000_000)
    key = ApiKey.objects.create(user=user, key=KEY, name="test key", remain_quota=5_000_000)
    channel = make_channel(
        base_url=upstream.base_url,
        models="gpt-3.5-turbo,gpt-4o-mini,text-embedding-3-small,omni-moderation-latest,"
        "text-moderation-stable,gpt-3.5-turbo-instruct,text-davinci-edit-001",
    )
    return World(user, key, channel, RelayClient(KEY), relay_runtime, upstream)
