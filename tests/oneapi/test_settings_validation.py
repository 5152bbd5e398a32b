from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SETUP = "import django; django.setup()"
DUMP = """
import json
import django
django.setup()
from django.conf import settings
print(json.dumps({
    "DATABASES": settings.DATABASES,
    "CACHES": settings.CACHES,
    "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
    "CELERY_BROKER_TRANSPORT_OPTIONS": settings.CELERY_BROKER_TRANSPORT_OPTIONS,
    "SESSION_ENGINE": settings.SESSION_ENGINE,
    "SYSTEM_NODE_TYPE": settings.NODE_TYPE,
    "THEME": settings.THEME,
    "SECRET_KEY": settings.SECRET_KEY,
    "DATA_DIR": str(settings.DATA_DIR),
}, default=str))
"""


def run_settings(
    tmp_path: Path, code: str = SETUP, *, quiet: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """Import oneapi.settings in a fresh interpreter with a clean environment."""
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "DJANGO_SETTINGS_MODULE": "oneapi.settings",
        "DATA_DIR": str(tmp_path),
    }
    if quiet:
        child_env["ONEAPI_QUIET_SECRET_WARNING"] = "1"
    child_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SQL_DSN", "bogus"),
        ("LOG_SQL_DSN", "redis://x"),
        ("SQL_MAX_OPEN_CONNS", "abc"),
        ("SQLITE_BUSY_TIMEOUT", "-1"),
        ("REDIS_CONN_STRING", "http://x"),
        ("SESSION_SECRET", "random_string"),
        ("NODE_TYPE", "boss"),
        ("METRIC_SUCCESS_RATE_THRESHOLD", "1.5"),
        ("RELAY_PROXY", "ftp://x"),
        ("USER_CONTENT_REQUEST_PROXY", "socks4://127.0.0.1:1080"),
        ("BATCH_UPDATE_ENABLED", "maybe"),
        ("FRONTEND_BASE_URL", "example.com"),
        ("GEMINI_SAFETY_SETTING", "LOUD"),
        ("GEMINI_VERSION", "latest"),
        ("THEME", "neon"),
        ("TZ", "Mars/Olympus"),
        ("TIKTOKEN_CACHE_DIR", "/no/such/dir"),
    ],
)
def test_bad_variable_fails_startup_naming_it(tmp_path, variable, value):
    result = run_settings(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr
    # The traceback quotes settings.py source lines, so check the exception line itself.
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        ("django.core.exceptions.ImproperlyConfigured: ", "oneapi.dsn.DSNError: ")
    )
    assert variable in last_line


@pytest.mark.parametrize(
    "proxy", ["http://127.0.0.1:3128", "HTTPS://proxy:443", "socks5://u:p@h:1080", "socks5h://h:1"]
)
def test_the_proxy_schemes_one_api_takes_are_accepted(tmp_path, proxy):
    result = run_settings(tmp_path, RELAY_PROXY=proxy, USER_CONTENT_REQUEST_PROXY=proxy)
    assert result.returncode == 0, result.stderr


def test_control_run_succeeds(tmp_path):
    result = run_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_postgres_and_redis(tmp_path):
    result = run_settings(
        tmp_path,
        DUMP,
        SQL_DSN="postgres://u:p@127.0.0.1:5432/x",
        REDIS_CONN_STRING="redis://127.0.0.1:6379/3",
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    default = data["DATABASES"]["default"]
    assert default["ENGINE"] == "django.db.backends.postgresql"
    assert default["NAME"] == "x"
    assert default["USER"] == "u"
    assert default["PASSWORD"] == "p"
    assert default["HOST"] == "127.0.0.1"
    assert default["PORT"] == "5432"
    assert default["CONN_MAX_AGE"] == 60
    assert default["CONN_HEALTH_CHECKS"] is True
    assert set(data["DATABASES"]) == {"default"}
    assert data["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert data["CACHES"]["default"]["LOCATION"] == "redis://127.0.0.1:6379/3"
    assert data["CELERY_BROKER_URL"] == "redis://127.0.0.1:6379/3"
    assert data["CELERY_RESULT_BACKEND"] == "redis://127.0.0.1:6379/3"
    assert data["SESSION_ENGINE"] == "django.contrib.sessions.backends.cache"


def test_defaults_are_sqlite_and_filesystem_broker(tmp_path):
    result = run_settings(tmp_path, DUMP)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    data_dir = tmp_path.resolve()
    assert data["DATA_DIR"] == str(data_dir)
    default = data["DATABASES"]["default"]
    assert default["ENGINE"] == "django.db.backends.sqlite3"
    assert default["NAME"] == str(data_dir / "one-api.db")
    assert default["OPTIONS"]["timeout"] == 3.0
    assert data["CACHES"]["default"]["BACKEND"] == ("django.core.cache.backends.locmem.LocMemCache")
    assert data["CELERY_BROKER_URL"] == "filesystem://"
    options = data["CELERY_BROKER_TRANSPORT_OPTIONS"]
    assert options["data_folder_in"] == str(data_dir / "celery" / "queue")
    assert options["data_folder_out"] == str(data_dir / "celery" / "queue")
    assert data["CELERY_RESULT_BACKEND"] == f"file://{data_dir / 'celery' / 'results'}"
    assert data["SESSION_ENGINE"] == "django.contrib.sessions.backends.db"


def test_log_sql_dsn_adds_logs_database(tmp_path):
    result = run_settings(tmp_path, DUMP, LOG_SQL_DSN="sqlite:////tmp/logs.db")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["DATABASES"]["logs"]["NAME"] == "/tmp/logs.db"
    assert data["DATABASES"]["logs"]["ENGINE"] == "django.db.backends.sqlite3"


def test_sqlite_busy_timeout_applies(tmp_path):
    result = run_settings(tmp_path, DUMP, SQLITE_BUSY_TIMEOUT="10000")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["DATABASES"]["default"]["OPTIONS"]["timeout"] == 10.0


def test_dotenv_in_cwd_is_read_and_real_env_wins(tmp_path):
    (tmp_path / ".env").write_text(
        "SQL_DSN=postgres://u:p@dotenv-host:5432/fromdotenv\nTHEME=berry\n",
        encoding="utf-8",
    )
    result = run_settings(tmp_path, DUMP, THEME="air")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["DATABASES"]["default"]["HOST"] == "dotenv-host"
    assert data["DATABASES"]["default"]["NAME"] == "fromdotenv"
    assert data["THEME"] == "air"


def test_bad_value_in_dotenv_fails(tmp_path):
    (tmp_path / ".env").write_text("NODE_TYPE=boss\n", encoding="utf-8")
    result = run_settings(tmp_path)
    assert result.returncode != 0
    assert "NODE_TYPE must be one of master, slave" in result.stderr


def test_random_session_secret_warning(tmp_path):
    result = run_settings(tmp_path, DUMP, quiet=False)
    assert result.returncode == 0, result.stderr
    assert "SESSION_SECRET is not set: a random secret is used" in result.stderr
    assert len(json.loads(result.stdout)["SECRET_KEY"]) >= 48


def test_no_warning_when_session_secret_set(tmp_path):
    result = run_settings(tmp_path, DUMP, quiet=False, SESSION_SECRET="a-real-secret")
    assert result.returncode == 0, result.stderr
    assert "SESSION_SECRET" not in result.stderr
    assert json.loads(result.stdout)["SECRET_KEY"] == "a-real-secret"


def test_session_secret_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("file-secret\n", encoding="utf-8")
    result = run_settings(tmp_path, DUMP, SESSION_SECRET_FILE=str(secret))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["SECRET_KEY"] == "file-secret"
