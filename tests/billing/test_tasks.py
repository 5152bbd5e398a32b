from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from accounts.models import User
from billing.models import ApiKey, Log
from billing.tasks import recover_orphaned_journals_task
from tests.conftest import child_env
from tests.factories import make_user

pytestmark = pytest.mark.django_db(transaction=True)

WRITER = textwrap.dedent(
    """
    import django, os, signal
    django.setup()
    from pathlib import Path
    from django.conf import settings
    from billing.journal import Journal, UsageRecord
    journal = Journal(Path(settings.DATA_DIR) / "journal")
    journal.append(UsageRecord("req-task-1", {user}, {key}, True, 0, 700, None))
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_beat_task_applies_the_journal_of_a_killed_process() -> None:
    user = make_user(quota=10_000)
    key = ApiKey.objects.create(user=user, key="t" * 48, name="k", remain_quota=5_000)
    journal_dir = Path(settings.DATA_DIR) / "journal"
    before = set(journal_dir.glob("*.jsonl")) if journal_dir.exists() else set()

    process = subprocess.run(
        [sys.executable, "-c", WRITER.format(user=user.pk, key=key.pk)],
        env=child_env(),
        check=False,
    )
    assert process.returncode == -9

    assert recover_orphaned_journals_task() >= 1
    user = User.objects.get(pk=user.pk)
    key.refresh_from_db()
    assert user.quota == 9_300
    assert key.remain_quota == 4_300
    assert Log.objects.count() == 0
    assert set(journal_dir.glob("*.jsonl")) <= before
