"""The one upstream HTTP client per event loop, and how upstream failures are classified.

httpx's API on aiohttp's connection pool (`httpx-aiohttp`): httpx's own pool loses about 3x
under concurrency (see the performance issue), while aiohttp's holds up. Timeouts are
explicit: `RELAY_TIMEOUT` bounds a whole exchange (0 = none, as One API), connecting is
always bounded so a dead upstream fails fast and the retry loop can move on.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx
from django.conf import settings
from httpx_aiohttp import HttpxAiohttpClient

CONNECT_TIMEOUT_SECONDS = 10.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)


def build_client() -> httpx.AsyncClient:
    total = settings.RELAY_TIMEOUT or None
    return HttpxAiohttpClient(
        timeout=httpx.Timeout(total, connect=CONNECT_TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        proxy=settings.RELAY_PROXY or None,
        # Upstream credentials come from channels only, never from the host's environment.
        trust_env=False,
        follow_redirects=False,
    )


def get_client() -> httpx.AsyncClient:
    """The shared client of the running event loop (a client is bound to its loop)."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = build_client()
        _clients[loop] = client
    return client


async def close_client() -> None:
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


def is_retryable_status(status: int) -> bool:
    """One API retries every failed status except 400: another channel may well succeed
    where this one answered 401/403/404/429/5xx, but a malformed request fails everywhere."""
    return status != 400 and not 200 <= status < 300


def is_retryable_exception(error: Exception) -> bool:
    """Connection failures and timeouts are worth another channel; anything else is a bug."""
    return isinstance(error, httpx.TransportError)
