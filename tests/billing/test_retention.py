"""Log retention: old consume logs go, in short batches; everything else stays."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.db import connections, router
from django.test.utils import CaptureQueriesContext

from billing import retention
from billing.models import Log, LogType
from billing.periodic_tasks import prune_logs_task

pytestmark = pytest.mark.django_db

NOW = 1_750_000_000
DAY = 24 * 3600


def log(age_days: float, type_: int = LogType.CONSUME, **fields: Any) -> Log:
    return Log.objects.create(type=type_, created_at=int(NOW - age_days * DAY), **fields)


def test_only_consume_logs_older_than_the_retention_go() -> None:
    old = [log(31), log(45), log(400)]
    kept = [
        log(29),  # recent
        log(31, LogType.TOPUP),
        log(31, LogType.MANAGE),
        log(31, LogType.SYSTEM),
        log(31, LogType.TEST),
    ]

    assert retention.prune_consume_logs(30, now=NOW) == len(old)

    assert set(Log.objects.values_list("pk", flat=True)) == {row.pk for row in kept}


def test_the_boundary_is_exact() -> None:
    on_the_line = Log.objects.create(type=LogType.CONSUME, created_at=NOW - 30 * DAY)
    just_over = Log.objects.create(type=LogType.CONSUME, created_at=NOW - 30 * DAY - 1)

    assert retention.prune_consume_logs(30, now=NOW) == 1
    assert list(Log.objects.values_list("pk", flat=True)) == [on_the_line.pk]
    assert not Log.objects.filter(pk=just_over.pk).exists()


def test_zero_days_keeps_everything() -> None:
    log(10_000)

    assert retention.prune_consume_logs(0, now=NOW) == 0
    assert Log.objects.count() == 1


def test_deletes_in_batches_each_in_its_own_transaction() -> None:
    for _ in range(7):
        log(40)
    log(1)
    database = router.db_for_write(Log)

    with CaptureQueriesContext(connections[database]) as queries:
        deleted = retention.prune_consume_logs(30, now=NOW, batch_size=3)

    assert deleted == 7
    statements = [query["sql"].upper() for query in queries.captured_queries]
    deletes = [sql for sql in statements if sql.startswith("DELETE")]
    assert len(deletes) == 3  # 3 + 3 + 1
    # Under the test's own transaction each atomic block is a savepoint: one per batch,
    # plus the last (empty) look.
    assert sum(sql.startswith("SAVEPOINT") for sql in statements) == 4
    assert Log.objects.count() == 1


def test_retention_days_comes_from_settings(settings: Any) -> None:
    settings.LOG_RETENTION_DAYS = 14
    assert retention.retention_days() == 14


def test_retention_days_falls_back_to_the_environment(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if hasattr(settings, "LOG_RETENTION_DAYS"):
        del settings.LOG_RETENTION_DAYS
    monkeypatch.delenv("LOG_RETENTION_DAYS", raising=False)
    assert retention.retention_days() == 0

    monkeypatch.setenv("LOG_RETENTION_DAYS", "3")
    assert retention.retention_days() == 3


def test_the_task_uses_the_configured_days(settings: Any) -> None:
    now = time.time()
    Log.objects.create(type=LogType.CONSUME, created_at=int(now - 3 * DAY))
    Log.objects.create(type=LogType.CONSUME, created_at=int(now))

    settings.LOG_RETENTION_DAYS = 0
    assert prune_logs_task() == 0

    settings.LOG_RETENTION_DAYS = 2
    assert prune_logs_task() == 1
    assert Log.objects.count() == 1
