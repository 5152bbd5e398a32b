"""Shared fixtures: required-service checks and live processes (Daphne, Celery)."""

from __future__ import annotations

import os
import socket

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
