"""Cloudflare Turnstile, as One API's `TurnstileCheck` middleware: the `?turnstile=` token is
verified once per session against siteverify with the TurnstileSecretKey option."""

from __future__ import annotations

import logging

import httpx
from django.conf import settings
from django.http import HttpRequest

from oneapi import options
from oneapi.api import ApiError

logger = logging.getLogger(__name__)

SESSION_KEY = "turnstile"
TOKEN_MISSING = "Turnstile token 为空"
CHECK_FAILED = "Turnstile 校验失败，请刷新重试！"
UNREACHABLE = "无法连接至 Turnstile 服务器，请稍后重试！"
TIMEOUT_SECONDS = 10.0


def verify(token: str, remote_ip: str) -> bool:
    """Whether Cloudflare accepts `token`; raises ApiError when it cannot be asked."""
    try:
        response = httpx.post(
            settings.ONEAPI_TURNSTILE_VERIFY_URL,
            data={
                "secret": options.get_str("TurnstileSecretKey"),
                "response": token,
                "remoteip": remote_ip,
            },
            timeout=TIMEOUT_SECONDS,
        )
        body = response.json()
    except (httpx.HTTPError, ValueError) as error:
        logger.warning("turnstile siteverify failed: %r", error)
        raise ApiError(UNREACHABLE) from None
    return isinstance(body, dict) and body.get("success") is True


def check(request: HttpRequest) -> None:
    """Refuse the request unless Turnstile is off, or this session already passed it, or
    the request carries a token Cloudflare accepts."""
    if not options.get_bool("TurnstileCheckEnabled"):
        return
    if request.session.get(SESSION_KEY):
        return
    token = request.GET.get("turnstile", "")
    if not token:
        raise ApiError(TOKEN_MISSING)
    if not verify(token, request.META.get("REMOTE_ADDR", "")):
        raise ApiError(CHECK_FAILED)
    request.session[SESSION_KEY] = True
