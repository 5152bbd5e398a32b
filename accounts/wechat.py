"""WeChat login through the separate wechat-server project (songquanpeng/wechat-server):
the user reads a code from the official account, and the server maps it to an openid."""

from __future__ import annotations

import logging

import httpx

from oneapi import options
from oneapi.api import ApiError

logger = logging.getLogger(__name__)

INVALID_CODE = "验证码错误或已过期"
UNREACHABLE = "无法连接至微信服务器，请稍后重试！"
TIMEOUT_SECONDS = 5.0


def openid_for_code(code: str) -> str:
    """`GET {WeChatServerAddress}/api/wechat/user?code=`, authorized by WeChatServerToken;
    the answer is `{success, message, data: <openid>}`."""
    if not code:
        raise ApiError("无效的参数")
    address = options.get_str("WeChatServerAddress").rstrip("/")
    try:
        response = httpx.get(
            f"{address}/api/wechat/user",
            params={"code": code},
            headers={"Authorization": options.get_str("WeChatServerToken")},
            timeout=TIMEOUT_SECONDS,
        )
        body = response.json()
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
        logger.warning("wechat server at %r failed: %r", address, error)
        raise ApiError(UNREACHABLE) from None
    if not isinstance(body, dict):
        raise ApiError(UNREACHABLE)
    if not body.get("success"):
        raise ApiError(str(body.get("message") or INVALID_CODE))
    openid = body.get("data")
    if not isinstance(openid, str) or not openid:
        raise ApiError(INVALID_CODE)
    return openid
