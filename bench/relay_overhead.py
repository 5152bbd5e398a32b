"""Relay overhead: the same chat load sent straight to a mock upstream and through the gateway.

    .venv/bin/python bench/relay_overhead.py [--seconds 10] [--concurrency 50] [--stream]

It builds a throwaway SQLite database (user, key, channel), starts Daphne on it and the fake
OpenAI upstream of the tests, and prints requests per second and latency percentiles for both
paths and their ratios. Numbers depend on the machine; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "b" * 48
PAYLOAD = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hello"}]}


@dataclass
class Run:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(int(len(ordered) * p), len(ordered) - 1)] * 1000


def prepare_database(data_dir: Path, upstream_url: str) -> None:
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "oneapi.settings"
    os.environ["ONEAPI_QUIET_SECRET_WARNING"] = "1"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from accounts.models import User
    from billing.models import ApiKey
    from channels_mgmt.services import create_channels

    user = User.objects.create_user("bench", "benchpass", quota=10**15)
    ApiKey.objects.create(user=user, key=KEY, name="bench", unlimited_quota=True)
    create_channels(
        {
            "type": 1,
            "name": "mock",
            "key": "sk-upstream",
            "base_url": upstream_url,
            "models": "gpt-3.5-turbo",
            "group": "default",
        }
    )


async def load(url: str, key: str, seconds: float, concurrency: int, stream: bool) -> Run:
    payload = {**PAYLOAD, "stream": stream}
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = await client.post(url, json=payload, headers=headers)
                await response.aread()
                if response.status_code != 200:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    return Run(len(latencies), errors, elapsed, latencies)


def report(name: str, run: Run) -> None:
    print(
        f"{name:8} {run.rate:9.1f} req/s  p50 {run.percentile(0.5):7.2f} ms  "
        f"p99 {run.percentile(0.99):7.2f} ms  errors {run.errors}"
    )


UPSTREAM_SCRIPT = (
    "import sys, time; sys.path.insert(0, sys.argv[1]);"
    "from tests.fakes.openai_upstream import FakeOpenAI;"
    "fake = FakeOpenAI(api_key='sk-upstream').start(); print(fake.base_url, flush=True);"
    "time.sleep(10**6)"
)


@contextlib.contextmanager
def mock_upstream() -> Iterator[str]:
    """The fake OpenAI in its own process, so it does not share a GIL with the load."""
    process = subprocess.Popen(
        [sys.executable, "-c", UPSTREAM_SCRIPT, str(ROOT)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--port", type=int, default=3999)
    parser.add_argument("--profile", help="write a cProfile of the gateway process here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, mock_upstream() as upstream_url:
        prepare_database(Path(tmp), upstream_url)
        env = {**os.environ, "DATA_DIR": tmp}
        profiler = ["-m", "cProfile", "-o", args.profile] if args.profile else []
        daphne = subprocess.Popen(
            [
                sys.executable,
                *profiler,
                "-m",
                "daphne",
                "-p",
                str(args.port),
                "oneapi.asgi:application",
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            gateway = f"http://127.0.0.1:{args.port}/v1/chat/completions"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"http://127.0.0.1:{args.port}/api/status", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            # Warm both paths (caches, connection pools) before measuring.
            asyncio.run(load(gateway, "sk-" + KEY, 1, 4, args.stream))
            direct = asyncio.run(
                load(
                    f"{upstream_url}/v1/chat/completions",
                    "sk-upstream",
                    args.seconds,
                    args.concurrency,
                    args.stream,
                )
            )
            relayed = asyncio.run(
                load(gateway, "sk-" + KEY, args.seconds, args.concurrency, args.stream)
            )
        finally:
            daphne.terminate()
            daphne.wait(timeout=15)
    report("direct", direct)
    report("gateway", relayed)
    latency = statistics.median(relayed.latencies) / statistics.median(direct.latencies)
    print(
        f"ratio    throughput {relayed.rate / direct.rate:.2f}x of direct, "
        f"p50 latency {latency:.2f}x"
    )


if __name__ == "__main__":
    main()
