"""A real Celery worker consumes from the embedded filesystem broker and from Redis."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tests.conftest import child_env, stop_process

pytestmark = pytest.mark.integration


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "oneapi",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--hostname",
            f"test-{uuid.uuid4().hex[:8]}@%h",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def filesystem_worker(tmp_path: Path, transactional_db: None) -> Iterator[Path]:
    for folder in ("queue", "processed", "results", "control"):
        (tmp_path / "celery" / folder).mkdir(parents=True)
    process = start_worker(child_env(DATA_DIR=str(tmp_path), REDIS_CONN_STRING=""))
    try:
        yield tmp_path
    finally:
        stop_process(process)


def test_worker_runs_a_task_on_the_embedded_filesystem_broker(filesystem_worker: Path) -> None:
    # given: a client configured exactly as settings configure the embedded broker
    queue = filesystem_worker / "celery" / "queue"
    client = Celery(
        "test-client",
        broker="filesystem://",
        backend=f"file://{filesystem_worker / 'celery' / 'results'}",
        broker_transport_options={
            "data_folder_in": str(queue),
            "data_folder_out": str(queue),
            "processed_folder": str(filesystem_worker / "celery" / "processed"),
            "control_folder": str(filesystem_worker / "celery" / "control"),
        },
    )
    token = uuid.uuid4().hex

    # when
    result = client.send_task("oneapi.ping", args=[token])

    # then
    assert result.get(timeout=60) == token


def test_worker_runs_a_task_on_redis(redis_url: str, transactional_db: None) -> None:
    process = start_worker(child_env(REDIS_CONN_STRING=redis_url))
    client = Celery("test-client", broker=redis_url, backend=redis_url)
    token = uuid.uuid4().hex
    try:
        assert client.send_task("oneapi.ping", args=[token]).get(timeout=60) == token
    finally:
        stop_process(process)
