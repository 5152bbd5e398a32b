"""`insert_logs`: the write-back's bulk insert of consume logs, on whichever database runs."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from billing.journal import consume_log_fields
from billing.log_insert import insert_logs
from billing.models import Log, LogType

pytestmark = pytest.mark.django_db(transaction=True)


def fields(request_id: str, **overrides: object) -> dict[str, object]:
    row = consume_log_fields(
        user_id=7,
        username="alice",
        token_name="ci key",
        model_name="gpt-3.5-turbo",
        quota=8,
        prompt_tokens=11,
        completion_tokens=7,
        channel_id=3,
        request_id=request_id,
        elapsed_ms=42,
        is_stream=True,
        content="模型倍率 0.75，补全倍率 1.33",
        system_prompt_reset=True,
    )
    row.update(overrides)
    return row


def test_rows_arrive_with_every_value() -> None:
    rows = [fields(f"req-{secrets.token_hex(6)}", quota=quota) for quota in (1, 2, 3)]
    insert_logs(rows)
    stored = list(Log.objects.order_by("quota").values(*rows[0]))
    assert stored == rows


def test_a_request_id_already_logged_is_skipped_not_an_error() -> None:
    first = fields("req-replayed", quota=5)
    insert_logs([first])
    # A replayed journal: the same request again (with a different quota, to tell them
    # apart), next to a new one, and the same new one twice within the batch.
    insert_logs([fields("req-replayed", quota=99), fields("req-new"), fields("req-new")])
    assert sorted(Log.objects.values_list("request_id", "quota")) == [
        ("req-new", 8),
        ("req-replayed", 5),
    ]


def test_absent_fields_take_the_models_defaults() -> None:
    insert_logs([{"user_id": 9, "request_id": "req-minimal", "type": int(LogType.SYSTEM)}])
    log = Log.objects.get(request_id="req-minimal")
    assert (log.user_id, log.type, log.quota, log.content, log.is_stream) == (
        9,
        LogType.SYSTEM,
        0,
        "",
        False,
    )


def test_an_unknown_field_is_refused_and_nothing_is_written() -> None:
    with pytest.raises(TypeError, match="no field colour"):
        insert_logs([fields("req-ok"), {**fields("req-bad"), "colour": "red"}])
    assert not Log.objects.exists()


def test_no_rows_is_nothing_to_do() -> None:
    insert_logs([])
    insert_logs(row for row in ())
    assert not Log.objects.exists()


SEPARATE_LOG_DATABASE = """
import sqlite3, sys
import django
django.setup()
from django.core.management import call_command
from billing.log_insert import insert_logs
call_command("migrate", verbosity=0)
call_command("migrate", database="logs", verbosity=0)
insert_logs([{"user_id": 1, "request_id": "req-elsewhere", "quota": 8}])
main, logs = sys.argv[1:3]
print(sqlite3.connect(logs).execute("SELECT request_id, quota FROM logs").fetchall())
print(sqlite3.connect(main).execute(
    "SELECT name FROM sqlite_master WHERE name IN ('logs', 'users')").fetchall())
"""


def test_logs_go_to_the_log_database_when_log_sql_dsn_is_set(tmp_path: Path) -> None:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"SQL_DSN", "REDIS_CONN_STRING", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="oneapi.settings",
        ONEAPI_QUIET_SECRET_WARNING="1",
        DATA_DIR=str(tmp_path),
        LOG_SQL_DSN=f"sqlite:///{tmp_path}/logs.db",
    )
    main_db, logs_db = tmp_path / "one-api.db", tmp_path / "logs.db"
    done = subprocess.run(
        [sys.executable, "-c", SEPARATE_LOG_DATABASE, str(main_db), str(logs_db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[('req-elsewhere', 8)]", "[('users',)]"]
