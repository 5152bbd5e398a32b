"""Sending one upstream request over the shared pool, and reading its body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import httpx
from httpx_aiohttp.transport import map_aiohttp_exceptions

from relay.failures import failure_from_exception, failure_from_response
from relay.upstream import get_pool

if TYPE_CHECKING:  # a runtime import would cycle: adaptors import this module
    from relay.adaptors.base import UpstreamRequest

HTTP_11 = {"http_version": b"HTTP/1.1"}


class UpstreamStream(httpx.AsyncByteStream):
    """An aiohttp body as httpx reads it; `read_body` and `iter_body` skip httpx's decoder
    and re-chunking layers for bodies without a content encoding (a tenth of the CPU of a
    relayed request went there)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with map_aiohttp_exceptions():
            async for chunk in self.response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        with map_aiohttp_exceptions():
            await self.response.__aexit__(None, None, None)  # release, let the writer end


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
        stream=UpstreamStream(response),
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


def _plain_body(response: httpx.Response) -> aiohttp.ClientResponse | None:
    """The aiohttp response behind `response` when its bytes need no decoding."""
    stream = response.stream
    if isinstance(stream, UpstreamStream) and "content-encoding" not in response.headers:
        return stream.response
    return None


async def iter_body(response: httpx.Response) -> AsyncIterator[bytes]:
    """`response.aiter_bytes()`: each read as it arrives, decoded."""
    plain = _plain_body(response)
    if plain is None:
        async for chunk in response.aiter_bytes():
            yield chunk
        return
    with map_aiohttp_exceptions():
        async for chunk in plain.content.iter_any():
            yield chunk


async def read_body(response: httpx.Response) -> bytes:
    plain = _plain_body(response)
    try:
        if plain is not None:
            with map_aiohttp_exceptions():
                return await plain.read()
        return await response.aread()
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    finally:
        await response.aclose()
