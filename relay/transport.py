"""Sending one upstream request over the shared pool, and reading its body."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
from httpx_aiohttp.transport import AiohttpResponseStream, map_aiohttp_exceptions

from relay.failures import failure_from_exception, failure_from_response
from relay.upstream import get_pool

if TYPE_CHECKING:  # a runtime import would cycle: adaptors import this module
    from relay.adaptors.base import UpstreamRequest

HTTP_11 = {"http_version": b"HTTP/1.1"}


async def open_upstream(call: UpstreamRequest) -> httpx.Response:
    """The aiohttp session called directly, its answer as an `httpx.Response` whose body is
    still to be read; aiohttp's exceptions come out as httpx's (as httpx-aiohttp maps them)."""
    pool = get_pool()
    with map_aiohttp_exceptions():
        response = await pool.session.request(
            call.method,
            call.url,
            headers=call.headers,
            data=call.content or None,
            allow_redirects=False,
            timeout=pool.timeout,
            proxy=pool.proxy,
        )
    return httpx.Response(
        response.status,
        headers=response.raw_headers,
        stream=AiohttpResponseStream(response),
        extensions=HTTP_11,
    )


async def send_upstream(call: UpstreamRequest) -> httpx.Response:
    """Send and return once the status and headers are in; the body is still to be read.
    A non-success status is read, closed and raised as an `UpstreamFailure`."""
    try:
        response = await open_upstream(call)
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    if response.status_code not in (200, 201):
        try:
            body = await response.aread()
        except httpx.HTTPError:
            body = b""
        finally:
            await response.aclose()
        raise failure_from_response(response.status_code, body, response.headers)
    return response


async def read_body(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    finally:
        await response.aclose()
