from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from accounts.models import User
from billing import journal
from billing.models import ApiKey, JournalMark, Log
from channels_mgmt.models import Channel
from tests.factories import make_channel, make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def account():
    user = make_user(quota=10_000)
    key = ApiKey.objects.create(user=user, key="k" * 48, name="key", remain_quota=5_000)
    channel = make_channel()
    return user, key, channel


def record(user, key, channel, request_id: str, quota: int, *, limited: bool = True):
    log = journal.consume_log_fields(
        user_id=user.pk,
        username=user.username,
        token_name=key.name,
        model_name="gpt-3.5-turbo",
        quota=quota,
        prompt_tokens=10,
        completion_tokens=5,
        channel_id=channel.pk,
        request_id=request_id,
        elapsed_ms=12,
        is_stream=False,
        content="倍率：0.25 × 1 × 3",
    )
    return journal.UsageRecord(request_id, user.pk, key.pk, limited, channel.pk, quota, log)


def test_apply_writes_logs_quota_and_counters_exactly_once(tmp_path: Path, account) -> None:
    # given
    user, key, channel = account
    writer = journal.Journal(tmp_path)
    writer.append(record(user, key, channel, "r1", 100))
    writer.append(record(user, key, channel, "r2", 250))

    # when
    batch = journal.apply_journal(writer.path)
    again = journal.apply_journal(writer.path)

    # then
    assert (batch.records, again.records) == (2, 0)
    assert batch.user_charges == {user.pk: 350}
    assert batch.key_charges == {key.pk: 350}
    user.refresh_from_db()
    key.refresh_from_db()
    channel.refresh_from_db()
    assert (user.quota, user.used_quota, user.request_count) == (9_650, 350, 2)
    assert (key.remain_quota, key.used_quota, key.request_count) == (4_650, 350, 2)
    assert (channel.used_quota, channel.request_count) == (350, 2)
    assert sorted(Log.objects.values_list("request_id", "quota")) == [("r1", 100), ("r2", 250)]
    writer.close()


def test_unlimited_keys_track_usage_but_keep_their_remaining_quota(tmp_path: Path, account):
    user, key, channel = account
    writer = journal.Journal(tmp_path)
    writer.append(record(user, key, channel, "r1", 100, limited=False))

    batch = journal.apply_journal(writer.path)

    key.refresh_from_db()
    assert (key.remain_quota, key.used_quota) == (5_000, 100)
    assert batch.key_charges == {}
    writer.close()


def test_a_torn_last_line_waits_until_it_is_complete(tmp_path: Path, account) -> None:
    user, key, channel = account
    writer = journal.Journal(tmp_path)
    writer.append(record(user, key, channel, "r1", 100))
    with writer.path.open("ab") as handle:
        handle.write(b'{"request_id": "r2", "us')

    assert journal.apply_journal(writer.path).records == 1
    assert (
        JournalMark.objects.get(journal=writer.path.name).offset
        == len(writer.path.read_bytes().split(b"\n")[0]) + 1
    )
    writer.close()


def test_live_journals_are_not_recovered(tmp_path: Path, account) -> None:
    user, key, channel = account
    writer = journal.Journal(tmp_path)
    writer.append(record(user, key, channel, "r1", 100))

    assert journal.recover_orphaned_journals(tmp_path) == 0
    assert writer.path.exists()
    assert Log.objects.count() == 0
    writer.close()


def test_a_killed_process_journal_is_recovered_with_nothing_lost(tmp_path: Path, account):
    # given: a child process journals two charges and is killed before any write-back
    user, key, channel = account
    lines = [record(user, key, channel, f"r{n}", 100 + n) for n in (1, 2)]
    script = textwrap.dedent(
        f"""
        import os, sys, time
        import django
        django.setup()
        from pathlib import Path
        from billing.journal import Journal, UsageRecord
        writer = Journal(Path({str(tmp_path)!r}))
        for item in {[vars(line) for line in lines]!r}:
            writer.append(UsageRecord(**item))
        print("journaled", flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"journaled\n"
    child.send_signal(signal.SIGKILL)
    child.wait()

    # when
    applied = journal.recover_orphaned_journals(tmp_path)

    # then
    assert applied == 2
    assert list(tmp_path.glob("*.jsonl")) == []
    assert JournalMark.objects.count() == 0
    assert User.objects.get(pk=user.pk).quota == 10_000 - 203
    assert ApiKey.objects.get(pk=key.pk).remain_quota == 5_000 - 203
    assert Channel.objects.get(pk=channel.pk).used_quota == 203
    assert Log.objects.count() == 2
