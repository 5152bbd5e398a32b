"""Structured JSON logs: one object per line, each carrying the request id it was logged under."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from oneapi.log_format import JsonFormatter, RequestIdFilter, request_id_var
from relay.http import RelayApp, Request, Response

REPO_ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("tests.log_format")


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """Root-logger output through the JSON formatter and the request id filter."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def parsed(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_line_is_one_json_object(lines: io.StringIO) -> None:
    log.warning("hello %s", "world")
    [entry] = parsed(lines)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tests.log_format"
    assert entry["message"] == "hello world"
    assert "T" in entry["time"] and entry["time"][-6] in "+-"  # ISO 8601 with its offset
    assert "request_id" not in entry  # not inside a request
    assert "exception" not in entry


def test_exceptions_and_odd_arguments_stay_on_one_line(lines: io.StringIO) -> None:
    try:
        raise ValueError("multi\nline")
    except ValueError:
        log.exception("failed with %r", {"bytes": b"\xff"})
    [entry] = parsed(lines)
    assert entry["level"] == "ERROR"
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: multi\nline" in entry["exception"]
    assert len(lines.getvalue().splitlines()) == 1


def test_the_request_id_comes_from_the_context(lines: io.StringIO) -> None:
    token = request_id_var.set("20240101000000123")
    try:
        log.info("inside")
    finally:
        request_id_var.reset(token)
    log.info("outside")
    inside, outside = parsed(lines)
    assert inside["request_id"] == "20240101000000123"
    assert "request_id" not in outside


def test_every_line_of_a_relay_request_carries_its_id(lines: io.StringIO) -> None:
    """Lines logged by the request's own task, a thread it waited on and a task it spawned
    carry its id; a panic's line carries it with the exception."""

    def in_thread() -> None:
        log.info("thread")

    async def handler(request: Request) -> Response:
        log.info("task")
        await sync_to_async(in_thread, thread_sensitive=False)()
        await asyncio.ensure_future(_spawned())
        if request.path == "/v1/boom":
            raise RuntimeError("boom")
        return Response(200, b"{}")

    async def _spawned() -> None:
        log.info("spawned")

    app = RelayApp(lambda method, path: (handler, {}))
    first = _call(app, "/v1/ok")
    second = _call(app, "/v1/boom")
    log.info("after")

    entries = parsed(lines)
    by_id: dict[str | None, list[str]] = {}
    for entry in entries:
        by_id.setdefault(entry.get("request_id"), []).append(entry["message"])
    assert by_id[first] == ["task", "thread", "spawned"]
    assert by_id[second][:3] == ["task", "thread", "spawned"]
    assert by_id[second][3].startswith("relay panic")
    assert by_id[None] == ["after"]
    panic = next(e for e in entries if e["message"].startswith("relay panic"))
    assert "RuntimeError: boom" in panic["exception"]


def _call(app: RelayApp, path: str) -> str:
    """Run one request through the app; returns the request id it answered with."""
    headers: dict[str, str] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers.update((k.decode(), v.decode()) for k, v in message["headers"])

    scope = {"type": "http", "method": "POST", "path": path, "headers": [], "client": None}
    async_to_sync(app)(scope, receive, send)
    return headers["x-oneapi-request-id"]


def _run_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    code = "import django, logging; django.setup(); logging.getLogger('x').warning('hi')"
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "DJANGO_SETTINGS_MODULE": "oneapi.settings",
        "DATA_DIR": str(tmp_path),
        "ONEAPI_QUIET_SECRET_WARNING": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_log_format_json_switches_the_settings_formatter(tmp_path: Path) -> None:
    done = _run_settings(tmp_path, LOG_FORMAT="json")
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stderr.strip().splitlines()[-1])
    assert entry["logger"] == "x" and entry["message"] == "hi"

    plain = _run_settings(tmp_path)
    assert plain.returncode == 0, plain.stderr
    assert plain.stderr.strip().splitlines()[-1].startswith("[WARNING]")

    wrong = _run_settings(tmp_path, LOG_FORMAT="xml")
    assert wrong.returncode != 0
    assert "LOG_FORMAT" in wrong.stderr
