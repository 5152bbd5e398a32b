"""The benchmark in a tiny mode: its runs complete and its bookkeeping check holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

needs_wrk_and_nginx = pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("nginx") is None,
    reason="wrk and nginx are needed (apt-get install wrk nginx-light)",
)


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    # The bench builds its own SQLite database; the suite's services are not for it.
    env = {k: v for k, v in os.environ.items() if k not in ("SQL_DSN", "REDIS_CONN_STRING")}
    env["ONEAPI_QUIET_SECRET_WARNING"] = "1"
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "relay_overhead.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=240,
    )


@pytest.mark.integration
@needs_wrk_and_nginx
def test_tiny_run_balances_the_books_and_streams_chunk_by_chunk() -> None:
    # when
    result = run_bench(
        "--seconds", "1", "--concurrency", "2", "--servers", "uvicorn", "--slow-gap", "0.1"
    )

    # then
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the books balance" in result.stdout
    assert "Problems:" not in result.stdout
    for mode in ("json", "sse"):
        assert f"| uvicorn | {mode} | 2 |" in result.stdout
    assert "arrived" in result.stdout


def load_bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "relay_overhead", ROOT / "bench/relay_overhead.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_the_books_check_names_a_lost_log() -> None:
    bench = load_bench_module()
    before = bench.Books(0, 0, 0, 0, 0, 1000)
    # two upstream requests charged 11 each, but only one consume log written
    after = bench.Books(1, 11, 1, 22, 2, 978)

    problems = bench.check_books(before, after, upstream_requests=2)

    assert problems == [
        "1 consume logs for 2 upstream requests",
        "used_quota moved 22, logs 11",
        "request_count moved 2",
        "key remain_quota moved 22",
    ]


def test_the_books_check_passes_exact_books() -> None:
    bench = load_bench_module()
    before = bench.Books(5, 55, 1, 55, 5, 945)
    after = bench.Books(7, 77, 1, 77, 7, 923)

    assert bench.check_books(before, after, upstream_requests=2) == []
