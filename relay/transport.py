"""Sending one upstream request with the shared client, and reading its body."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from relay.failures import failure_from_exception, failure_from_response
from relay.upstream import get_client

if TYPE_CHECKING:  # a runtime import would cycle: adaptors import this module
    from relay.adaptors.base import UpstreamRequest


async def send_upstream(call: UpstreamRequest) -> httpx.Response:
    """Send and return once the status and headers are in; the body is still to be read.
    A non-success status is read, closed and raised as an `UpstreamFailure`."""
    client = get_client()
    request = client.build_request(
        call.method, call.url, headers=call.headers, content=call.content
    )
    try:
        response = await client.send(request, stream=True)
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
