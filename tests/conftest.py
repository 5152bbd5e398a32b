"""Shared fixtures: required-service checks and live processes (Daphne, Celery)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

# In CI a missing service must fail the run; on a developer machine it is a visible skip.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    require_service("Redis", "127.0.0.1", 6379)
    return url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dsn_for(settings_dict: dict) -> str:
    """A SQL_DSN that points a child process at the database this test process uses."""
    engine = settings_dict["ENGINE"]
    name = settings_dict["NAME"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{name}"
    scheme = "postgres" if engine.endswith("postgresql") else "mysql"
    user = settings_dict.get("USER", "")
    password = settings_dict.get("PASSWORD", "")
    credentials = f"{user}:{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or ("5432" if scheme == "postgres" else "3306")
    return f"{scheme}://{credentials}{host}:{port}/{name}"


def child_env(**overrides: str) -> dict[str, str]:
    """Environment for a child process that shares this test run's database and data dir."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "oneapi.settings",
            "ONEAPI_QUIET_SECRET_WARNING": "1",
            "SQL_DSN": dsn_for(connection.settings_dict),
            "DATA_DIR": str(settings.DATA_DIR),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(overrides)
    return env


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def live_daphne(transactional_db: None) -> Iterator[str]:
    """A real Daphne process serving the app on the test database; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "oneapi.asgi:application",
        ],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(base_url + "/api/status", process=process)
        yield base_url
    finally:
        stop_process(process)


@pytest.fixture(autouse=True)
def fresh_process_caches() -> Iterator[None]:
    """Each test starts with empty in-memory caches: the database is rolled back between
    tests without the invalidations a real write path would send."""
    from oneapi import caching

    def drop_all() -> None:
        for kind in list(caching._handlers):
            caching.run_handlers(kind, "*")

    drop_all()
    yield
    drop_all()


@pytest.fixture(autouse=True, scope="session")
def discard_stale_journals() -> None:
    """The test database is new on every run; usage journals that earlier runs' killed
    processes left in DATA_DIR belong to the old one and must not be replayed into it."""
    from pathlib import Path

    from django.conf import settings

    from billing.journal import SUFFIX, is_orphaned

    directory = Path(settings.DATA_DIR) / "journal"
    for path in directory.glob(f"*{SUFFIX}") if directory.is_dir() else ():
        if is_orphaned(path):
            path.unlink(missing_ok=True)
