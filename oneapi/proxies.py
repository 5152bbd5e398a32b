"""Outbound proxies (`RELAY_PROXY`, `USER_CONTENT_REQUEST_PROXY`): HTTP(S) and SOCKS5.

One API's Go client takes http://, https:// and socks5:// proxy URLs. httpx speaks all of
them (SOCKS through socksio). aiohttp names an HTTP(S) proxy per request but cannot speak
SOCKS, so a SOCKS proxy becomes the session's connector instead (aiohttp-socks), and the
requests name no proxy. Host names go to the SOCKS proxy unresolved, as Go's dialer sends
them (socks5h:// means the same here).
"""

from __future__ import annotations

from typing import Any

import aiohttp

SOCKS_SCHEMES = ("socks5://", "socks5h://")


def is_socks(proxy: str | None) -> bool:
    return proxy is not None and proxy.lower().startswith(SOCKS_SCHEMES)


def aiohttp_connector(proxy: str | None, **options: Any) -> aiohttp.TCPConnector:
    """A connector for a session whose requests go through `proxy` (TCPConnector options)."""
    if proxy is None or not is_socks(proxy):
        return aiohttp.TCPConnector(**options)
    from aiohttp_socks import ProxyConnector

    options.pop("resolver", None)  # the proxy resolves the hosts
    url = "socks5://" + proxy.split("://", 1)[1]
    return ProxyConnector.from_url(url, rdns=True, **options)


def aiohttp_request_proxy(proxy: str | None) -> str | None:
    """What to pass as a request's `proxy=`: the HTTP(S) proxy, or None (none, or SOCKS,
    which the session's connector already goes through)."""
    return None if not proxy or is_socks(proxy) else proxy
