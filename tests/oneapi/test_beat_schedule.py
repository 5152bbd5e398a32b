from __future__ import annotations

import subprocess
import sys

from tests.conftest import child_env

PRINT_SCHEDULE = "from django.conf import settings; print(sorted(settings.CELERY_BEAT_SCHEDULE))"


def schedule(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {PRINT_SCHEDULE}"],
        env=child_env(**env),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_channel_jobs_are_scheduled_only_when_their_frequency_is_set() -> None:
    assert "test-all-channels" not in schedule()
    assert "update-all-balances" not in schedule()
    jobs = schedule(CHANNEL_TEST_FREQUENCY="10", CHANNEL_UPDATE_FREQUENCY="60")
    assert "test-all-channels" in jobs
    assert "update-all-balances" in jobs
    assert "recover-orphaned-journals" in jobs
