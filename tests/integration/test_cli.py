"""The `oneapi` console command: flags, and the supervised web + worker + beat tree."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from oneapi import cli
from oneapi.version import VERSION
from tests.conftest import free_port, wait_for_http

ONEAPI = str(Path(sys.executable).parent / "oneapi")


def test_version_flag_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"oneapi-py {VERSION}\n"


def test_help_lists_one_api_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    assert exit_info.value.code == 0
    for flag in ("--port", "--log-dir", "--version", "--help"):
        assert flag in help_text


def test_rejects_an_out_of_range_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--port", "70000"]) == 2
    assert "--port must be 1-65535" in capsys.readouterr().err


def start_gateway(tmp_path: Path, port: int) -> subprocess.Popen[str]:
    env = dict(os.environ)
    for name in (
        "SQL_DSN",
        "REDIS_CONN_STRING",
        "LOG_SQL_DSN",
        "DJANGO_SETTINGS_MODULE",
        "DATA_DIR",
    ):
        env.pop(name, None)
    env.update({"ONEAPI_QUIET_SECRET_WARNING": "1", "PYTHONUNBUFFERED": "1"})
    return subprocess.Popen(
        [ONEAPI, "--port", str(port), "--log-dir", str(tmp_path / "logs")],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def started_children(process: subprocess.Popen[str]) -> dict[str, int]:
    assert process.stdout is not None
    found: dict[str, int] = {}
    while len(found) < 3:
        line = process.stdout.readline()
        assert line, "gateway exited before starting its children"
        match = re.match(r"oneapi: started (\w+) \(pid (\d+)\)", line)
        if match:
            found[match[1]] = int(match[2])
    return found


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_run_serves_status_on_embedded_sqlite_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    process = start_gateway(tmp_path, port)
    try:
        children = started_children(process)
        wait_for_http(f"http://127.0.0.1:{port}/api/status", timeout=60, process=process)

        response = httpx.get(f"http://127.0.0.1:{port}/api/status")
        assert response.json()["success"] is True
        assert sorted(children) == ["beat", "web", "worker"]
        assert all(is_running(pid) for pid in children.values())
        assert (tmp_path / "data" / "one-api.db").is_file()
        assert list((tmp_path / "logs").glob("oneapi-*.log"))

        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "oneapi: stopped" in output
    deadline = time.monotonic() + 10
    while any(is_running(pid) for pid in children.values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(is_running(pid) for pid in children.values())


@pytest.mark.integration
def test_a_crashed_child_is_reported_and_stops_the_gateway(tmp_path: Path) -> None:
    port = free_port()
    process = start_gateway(tmp_path, port)
    try:
        children = started_children(process)
        wait_for_http(f"http://127.0.0.1:{port}/api/status", timeout=60, process=process)

        os.kill(children["worker"], signal.SIGKILL)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1
    assert f"oneapi: worker (pid {children['worker']}) exited with code -9" in output
    assert not is_running(children["web"])
