"""`/v1/oneapi/proxy/{channel_id}/{path}`: a raw pass-through to a Proxy-type channel.

As in One API there is no billing; the client's headers go upstream except its own key and
the forwarding headers, with the channel's key as `Authorization`. Only channels of type
Proxy (43) can be reached this way: any other channel would hand its key to arbitrary paths.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from relay.caller import authenticate
from relay.catalog import ChannelType
from relay.dispatch import forced_channel
from relay.errors import RelayError
from relay.failures import failure_from_exception
from relay.http import Request, StreamResponse
from relay.upstream import get_client

DROPPED_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "connection",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-real-ip",
        "cf-connecting-ip",
        "cf-ipcountry",
        "accept-encoding",
    }
)
DROPPED_RESPONSE_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "content-encoding", "content-type"}
)


async def relay_proxy(request: Request) -> StreamResponse:
    caller = await authenticate(request)
    caller_with_channel = type(caller)(
        key=caller.key,
        user=caller.user,
        forced_channel_id=request.params["channel_id"],
        options=caller.options,
        table=caller.table,
        runtime=caller.runtime,
    )
    channel = forced_channel(caller_with_channel)
    if channel.type != ChannelType.PROXY:
        raise RelayError(400, f"渠道 #{channel.id} 不是代理渠道")
    url = channel.base_url.rstrip("/") + "/" + request.params["path"]
    if request.query_string:
        url += "?" + request.query_string.decode("latin-1")
    headers = {k: v for k, v in request.headers.items() if k not in DROPPED_REQUEST_HEADERS}
    for name, value in headers.items():
        if not value.isprintable() or not value.isascii():
            # What arrived as latin-1 bytes cannot always go out again through httpx.
            raise RelayError(400, f"invalid value in request header {name}")
    headers["authorization"] = channel.key
    client = get_client()
    upstream_request = client.build_request(
        request.method, url, headers=headers, content=request.body
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.HTTPError as error:
        raise failure_from_exception(error).error from error
    response_headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in upstream.headers.multi_items()
        if name.lower() not in DROPPED_RESPONSE_HEADERS
    ]
    content_type = upstream.headers.get("content-type", "").encode("latin-1")
    return StreamResponse(
        upstream.status_code,
        _body(upstream),
        content_type=content_type,
        headers=response_headers,
        on_close=upstream.aclose,
    )


async def _body(upstream: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.aiter_raw():
            yield chunk
    finally:
        await upstream.aclose()
