from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from relay import upstream
from tests.fakes.openai_upstream import FakeOpenAI


@pytest.fixture
def fake():
    with FakeOpenAI(api_key="sk-upstream", reply="Hello from fake upstream.") as server:
        yield server


def chat(stream: bool = False) -> dict:
    return {
        "model": "gpt-3.5-turbo",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }


def test_one_client_per_event_loop_reused_across_calls(fake) -> None:
    async def twice() -> tuple[httpx.AsyncClient, httpx.AsyncClient, int]:
        first = upstream.get_client()
        response = await first.post(
            fake.base_url + "/v1/chat/completions",
            json=chat(),
            headers={"Authorization": "Bearer sk-upstream"},
        )
        second = upstream.get_client()
        await upstream.close_client()
        return first, second, response.status_code

    first, second, status = asyncio.run(twice())

    assert first is second
    assert status == 200
    assert fake.last_request.json["model"] == "gpt-3.5-turbo"


def test_stream_chunks_arrive_as_the_upstream_sends_them(fake) -> None:
    fake.scenario = "slow_stream"
    fake.chunk_delay = 0.2

    async def arrival_times() -> list[float]:
        times: list[float] = []
        client = upstream.get_client()
        async with client.stream(
            "POST",
            fake.base_url + "/v1/chat/completions",
            json=chat(stream=True),
            headers={"Authorization": "Bearer sk-upstream"},
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    times.append(time.monotonic())
        await upstream.close_client()
        return times

    times = asyncio.run(arrival_times())

    gaps = [later - earlier for earlier, later in zip(times, times[1:], strict=False)]
    assert len(times) >= 5
    assert all(gap >= 0.15 for gap in gaps), gaps


def test_a_reset_connection_is_a_retryable_transport_error(fake) -> None:
    fake.scenario = "reset"

    async def call() -> Exception:
        try:
            await upstream.get_client().post(fake.base_url + "/v1/chat/completions", json=chat())
        except Exception as error:  # noqa: BLE001 - the classification is what is tested
            return error
        finally:
            await upstream.close_client()
        raise AssertionError("the fake reset the connection; the call must fail")

    error = asyncio.run(call())

    assert upstream.is_retryable_exception(error) is True


def test_relay_timeout_bounds_a_hanging_upstream(fake, settings) -> None:
    settings.RELAY_TIMEOUT = 1
    fake.scenario = "timeout"
    fake.hang_seconds = 5

    async def call() -> tuple[Exception, float]:
        started = time.monotonic()
        try:
            await upstream.get_client().post(fake.base_url + "/v1/chat/completions", json=chat())
        except Exception as error:  # noqa: BLE001
            return error, time.monotonic() - started
        finally:
            await upstream.close_client()
        raise AssertionError("the fake hangs longer than RELAY_TIMEOUT")

    error, elapsed = asyncio.run(call())

    assert isinstance(error, httpx.TimeoutException)
    assert upstream.is_retryable_exception(error) is True
    assert elapsed < 3


@pytest.mark.parametrize(
    ("status", "retryable"),
    [
        (200, False),
        (201, False),
        (400, False),
        (401, True),
        (404, True),
        (429, True),
        (500, True),
        (503, True),
    ],
)
def test_retryable_statuses_follow_one_api(status: int, retryable: bool) -> None:
    assert upstream.is_retryable_status(status) is retryable
