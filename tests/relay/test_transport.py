"""The hot path's upstream call: aiohttp's session directly, answers as httpx responses."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiohttp import web

from relay import upstream
from relay.adaptors.base import UpstreamRequest
from relay.failures import UpstreamFailure
from relay.transport import read_body, send_upstream
from tests.fakes.server import FakeServer, RecordedRequest


class CookieSetter(FakeServer[RecordedRequest]):
    """Answers JSON and sets a session cookie on every answer."""

    thread_name = "fake-cookie-setter"

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        response = web.json_response({"ok": True})
        response.set_cookie("session", "upstream-secret")
        return response


@pytest.fixture
def server():
    with CookieSetter() as fake:
        yield fake


def call(url: str, **headers: str) -> UpstreamRequest:
    return UpstreamRequest("POST", url, {"Content-Type": "application/json", **headers}, b"{}")


def twice(url: str) -> list[bytes]:
    async def run() -> list[bytes]:
        bodies = []
        for _ in range(2):
            bodies.append(await read_body(await send_upstream(call(url))))
        await upstream.close_client()
        return bodies

    return asyncio.run(run())


def test_a_cookie_one_upstream_sets_is_never_sent_back(server) -> None:
    # when
    bodies = twice(server.base_url + "/v1/chat/completions")

    # then
    assert bodies == [b'{"ok": true}', b'{"ok": true}']
    assert [request.headers.get("cookie") for request in server.requests] == [None, None]


def test_upstreams_see_the_headers_the_httpx_client_sent(server) -> None:
    # when
    twice(server.base_url + "/v1/chat/completions")

    # then
    headers = server.last_request.headers
    assert headers["user-agent"] == f"python-httpx/{httpx.__version__}"
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["content-type"] == "application/json"
    assert server.last_request.body == b"{}"


def test_a_request_header_overrides_a_default_one(server) -> None:
    async def run() -> None:
        url = server.base_url + "/v1/chat/completions"
        await read_body(await send_upstream(call(url, **{"User-Agent": "mine"})))
        await upstream.close_client()

    asyncio.run(run())

    assert server.last_request.headers["user-agent"] == "mine"


def test_a_refused_connection_is_a_retryable_failure() -> None:
    async def run() -> UpstreamFailure:
        try:
            await send_upstream(call("http://127.0.0.1:9/v1/chat/completions"))
        except UpstreamFailure as failure:
            return failure
        finally:
            await upstream.close_client()
        raise AssertionError("no failure")

    failure = asyncio.run(run())

    assert failure.retryable is True
    assert failure.error.status == 500
    assert failure.error.code == "do_request_failed"


def test_the_hot_path_and_the_httpx_client_share_one_session() -> None:
    async def run() -> bool:
        pool = upstream.get_pool()
        shared = pool.client._transport.client is pool.session
        await upstream.close_client()
        return shared

    assert asyncio.run(run()) is True
