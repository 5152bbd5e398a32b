"""What a web process loads: only what serving needs (the memory target of the benchmark).

Celery (loaded where a job is queued), the Redis client (loaded where `REDIS_CONN_STRING` is
set) and pyOpenSSL (Twisted's STARTTLS, refused by `oneapi.daphne_plain`) cost ~19 MB per
process together. The gateway's own Daphne serves streamed and whole chat completions with
a `sitecustomize` that writes the process's modules when it exits; none of the three may be
among them.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    CHAT_MESSAGES,
    CHAT_MODEL,
    make_world,
    start_daphne,
    wait_for_log_count,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RECORD_MODULES_AT_EXIT = """
import atexit, os, sys

def _record_modules():
    names = sorted(name for name, module in sys.modules.items() if module is not None)
    with open(os.environ["ONEAPI_TEST_MODULES_REPORT"], "w") as report:
        report.write("\\n".join(names))

atexit.register(_record_modules)
"""
NOT_LOADED = {"celery", "kombu", "billiard", "redis", "OpenSSL"}


def test_a_node_without_redis_serves_without_celery_redis_or_pyopenssl(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(RECORD_MODULES_AT_EXIT)
    report = tmp_path / "modules.txt"
    with FakeOpenAI() as upstream:
        world = make_world(upstream, models=CHAT_MODEL)
        server = start_daphne(
            tmp_path / "node",
            REDIS_CONN_STRING="",
            PYTHONPATH=os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
            ONEAPI_TEST_MODULES_REPORT=str(report),
        )
        try:
            wait_for_routing(server.base_url, world)
            for stream in (False, True):
                response = httpx.post(
                    f"{server.base_url}/v1/chat/completions",
                    headers=world.auth_headers,
                    json={"model": CHAT_MODEL, "messages": CHAT_MESSAGES, "stream": stream},
                    timeout=30,
                )
                assert response.status_code == 200, response.text
            wait_for_log_count(world.user.pk, 2)
        finally:
            assert server.terminate() == 0, server.output()
    loaded = set(report.read_text().split())
    assert {"relay.dispatch", "relay.transport", "twisted.internet.tcp"} <= loaded
    assert sorted(name for name in loaded if name.split(".")[0] in NOT_LOADED) == []
