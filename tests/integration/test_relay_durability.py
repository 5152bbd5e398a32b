"""A charge survives the server: SIGKILL right after the answer, and a graceful SIGTERM.

The relay journals each charge (one line in DATA_DIR/journal) before the client gets the
last byte of its answer, and a write-back thread applies the journal to the database later.
So a process killed right after answering has not written the log yet, and whoever starts
next (a second server, or `recover_orphaned_journals`) applies it exactly once.

Where a test must see the database *before* the write-back, the server runs with batch
updates every hour, so the periodic write-back cannot race the kill.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from billing.journal import recover_orphaned_journals
from billing.models import JournalMark, Log
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    CHAT_QUOTA,
    DaphneServer,
    World,
    assert_billed,
    make_world,
    post_chat,
    start_daphne,
    wait_for_log_count,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The periodic write-back every hour: only a graceful stop or a recovery writes the journal.
NO_PERIODIC_WRITEBACK = {"BATCH_UPDATE_ENABLED": "true", "BATCH_UPDATE_INTERVAL": "3600"}


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


@pytest.fixture
def world(transactional_db: None, upstream: FakeOpenAI) -> World:
    return make_world(upstream, models="gpt-3.5-turbo")


@pytest.fixture
def servers() -> Iterator[list[DaphneServer]]:
    """Every server a test starts; whatever is still running is stopped afterwards."""
    started: list[DaphneServer] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def journal_lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line]


def stream_chat(server: DaphneServer, world: World) -> tuple[str, str]:
    """A streamed chat read to its end; returns (request id, text)."""
    text = ""
    with httpx.stream(
        "POST",
        f"{server.base_url}/v1/chat/completions",
        json={
            "model": "gpt-3.5-turbo",
            "messages": [{"role": "user", "content": "Hello there"}],
            "stream": True,
        },
        headers=world.auth_headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-oneapi-request-id"]
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        text += orjson.loads(event)["choices"][0]["delta"].get("content") or ""
    return request_id, text


def assert_nothing_written(world: World) -> None:
    assert list(Log.objects.filter(user_id=world.user.pk)) == []
    world.refresh()
    assert world.user.quota == world.initial_quota
    assert world.user.used_quota == 0
    assert world.key.remain_quota == world.initial_remain
    assert world.key.used_quota == 0
    assert world.channel.used_quota == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_sigkill_after_the_answer_then_a_new_server_applies_the_charge_once(
    tmp_path: Path,
    world: World,
    upstream: FakeOpenAI,
    servers: list[DaphneServer],
    stream: bool,
) -> None:
    first = start_daphne(tmp_path, **NO_PERIODIC_WRITEBACK)
    servers.append(first)

    # when: the whole answer has arrived, the server dies at once
    if stream:
        request_id, text = stream_chat(first, world)
        assert text == upstream.reply
    else:
        response = post_chat(first.base_url, world)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == upstream.reply
        request_id = response.headers["x-oneapi-request-id"]
    first.kill()

    # then: nothing is in the database yet, but the charge is in the dead server's journal
    assert first.process.returncode == -9
    assert_nothing_written(world)
    (journal,) = first.journals()
    (line,) = journal_lines(journal)
    assert line["request_id"] == request_id
    assert line["quota"] == CHAT_QUOTA
    assert line["log"]["is_stream"] is stream

    # when: the next server starts on the same data directory
    second = start_daphne(tmp_path, **NO_PERIODIC_WRITEBACK)
    servers.append(second)

    # then: its startup applied the dead journal exactly once, and removed it
    assert_billed(world, {request_id: CHAT_QUOTA}, timeout=0)
    log = Log.objects.get(request_id=request_id)
    assert log.is_stream is stream
    assert (log.prompt_tokens, log.completion_tokens) == (11, 7)
    assert not journal.exists()
    assert not JournalMark.objects.filter(journal=journal.name).exists()
    (own_journal,) = second.journals()
    assert own_journal != journal

    # and the new server goes on billing from the balances it read after the recovery
    response = post_chat(second.base_url, world)
    assert response.status_code == 200
    second.terminate()
    assert_billed(
        world, {request_id: CHAT_QUOTA, response.headers["x-oneapi-request-id"]: CHAT_QUOTA}
    )


def test_sigkill_then_recover_orphaned_journals_in_this_process(
    tmp_path: Path, world: World, servers: list[DaphneServer]
) -> None:
    server = start_daphne(tmp_path, **NO_PERIODIC_WRITEBACK)
    servers.append(server)
    request_ids = []
    for _ in range(3):
        response = post_chat(server.base_url, world)
        assert response.status_code == 200, response.text
        request_ids.append(response.headers["x-oneapi-request-id"])
    server.kill()
    assert_nothing_written(world)

    applied = recover_orphaned_journals(server.journal_dir)

    assert applied == 3
    assert_billed(world, dict.fromkeys(request_ids, CHAT_QUOTA), timeout=0)
    assert server.journals() == []
    # Nothing left to apply a second time.
    assert recover_orphaned_journals(server.journal_dir) == 0
    assert_billed(world, dict.fromkeys(request_ids, CHAT_QUOTA), timeout=0)


def test_sigkill_with_the_default_writeback_applies_every_charge_exactly_once(
    tmp_path: Path, world: World, servers: list[DaphneServer]
) -> None:
    """With the real 0.5 s write-back, part of the journal is applied before the kill and
    part after: the recovery must neither lose nor repeat a line."""
    server = start_daphne(tmp_path)
    servers.append(server)
    request_ids = []
    for _ in range(3):
        response = post_chat(server.base_url, world)
        assert response.status_code == 200, response.text
        request_ids.append(response.headers["x-oneapi-request-id"])
    wait_for_log_count(world.user.pk, 3)  # the write-back has run
    for _ in range(2):
        response = post_chat(server.base_url, world)
        assert response.status_code == 200, response.text
        request_ids.append(response.headers["x-oneapi-request-id"])
    server.kill()
    (journal,) = server.journals()
    assert len(journal_lines(journal)) == 5
    assert JournalMark.objects.get(journal=journal.name).offset > 0

    assert recover_orphaned_journals(server.journal_dir) in (0, 1, 2)

    assert_billed(world, dict.fromkeys(request_ids, CHAT_QUOTA), timeout=0)
    assert server.journals() == []


def test_sigterm_flushes_the_journal_before_exit(
    tmp_path: Path, world: World, servers: list[DaphneServer]
) -> None:
    server = start_daphne(tmp_path, **NO_PERIODIC_WRITEBACK)
    servers.append(server)
    response = post_chat(server.base_url, world)
    assert response.status_code == 200, response.text
    request_id = response.headers["x-oneapi-request-id"]

    exit_code = server.terminate()

    assert exit_code == 0, server.output()
    assert_billed(world, {request_id: CHAT_QUOTA}, timeout=0)
    # A journal left behind must be marked as fully applied...
    for journal in server.journals():
        assert JournalMark.objects.get(journal=journal.name).offset == journal.stat().st_size

    # ...so the next server, recovering whatever is there, charges nothing again.
    second = start_daphne(tmp_path, **NO_PERIODIC_WRITEBACK)
    servers.append(second)
    assert len(second.journals()) == 1
    assert_billed(world, {request_id: CHAT_QUOTA}, timeout=0)
