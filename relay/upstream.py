"""The one upstream connection pool per event loop, and how upstream failures are classified.

One aiohttp `ClientSession` per loop holds the pool: httpx's own pool loses about 3x under
concurrency (see the performance issue), aiohttp's holds up. The relay's hot path
(`relay.transport`) calls that session directly and wraps the answer in an `httpx.Response`;
httpx's client layers on top (URL merging, cookies, auth and redirect generators) cost about
a fifth of a relayed request's CPU. Other callers (proxy, token exchanges, polling) get an
httpx client over the same session (`get_client`).

Timeouts are explicit: `RELAY_TIMEOUT` bounds each wait on the upstream (0 = none, as One
API); connecting is always bounded so a dead upstream fails fast and the retry loop moves on.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass

import aiohttp
import httpx
from django.conf import settings
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from oneapi import proxies

CONNECT_TIMEOUT_SECONDS = 10.0
MAX_CONNECTIONS = 1000
# What httpx sent by default, kept so upstreams see the same request as before.
DEFAULT_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}


@dataclass
class Pool:
    session: aiohttp.ClientSession
    client: httpx.AsyncClient
    timeout: aiohttp.ClientTimeout
    proxy: str | None


_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Pool] = weakref.WeakKeyDictionary()


def build_pool() -> Pool:
    total = settings.RELAY_TIMEOUT or None
    session = aiohttp.ClientSession(
        connector=proxies.aiohttp_connector(
            settings.RELAY_PROXY, limit=MAX_CONNECTIONS, keepalive_timeout=5.0
        ),
        headers=DEFAULT_HEADERS,
        # Upstreams are many and unrelated: a cookie one sets must never reach another.
        cookie_jar=aiohttp.DummyCookieJar(),
        # Upstream credentials come from channels only, never from the host's environment.
        trust_env=False,
        auto_decompress=False,  # httpx.Response decodes, as it did for the httpx client
    )
    client = HttpxAiohttpClient(
        transport=AiohttpTransport(client=session),
        timeout=httpx.Timeout(total, connect=CONNECT_TIMEOUT_SECONDS),
        limits=httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=200),
        proxy=settings.RELAY_PROXY or None,
        trust_env=False,
        follow_redirects=False,
    )
    # The mapping httpx-aiohttp makes of httpx's timeouts (connect -> sock_connect, read ->
    # sock_read, pool -> connect), so both paths time out alike.
    timeout = aiohttp.ClientTimeout(
        sock_connect=CONNECT_TIMEOUT_SECONDS, sock_read=total, connect=total
    )
    return Pool(session, client, timeout, proxies.aiohttp_request_proxy(settings.RELAY_PROXY))


def get_pool() -> Pool:
    """The pool of the running event loop (a session is bound to its loop)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None or pool.client.is_closed or pool.session.closed:
        pool = build_pool()
        _pools[loop] = pool
    return pool


def get_client() -> httpx.AsyncClient:
    """An httpx client over the running loop's pool, for callers off the hot path."""
    return get_pool().client


async def close_client() -> None:
    pool = _pools.pop(asyncio.get_running_loop(), None)
    if pool is not None:
        await pool.client.aclose()
        await pool.session.close()


def is_retryable_status(status: int) -> bool:
    """One API retries every failed status except 400: another channel may well succeed
    where this one answered 401/403/404/429/5xx, but a malformed request fails everywhere."""
    return status != 400 and not 200 <= status < 300


def is_retryable_exception(error: Exception) -> bool:
    """Connection failures and timeouts are worth another channel; anything else is a bug."""
    return isinstance(error, httpx.TransportError)
