"""`/api` routes of the site itself: public pages, options, groups and the model table."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from rest_framework.request import Request
from rest_framework.response import Response

from oneapi import options
from oneapi.api import AdminView, ApiError, ApiView, PublicView, RootView, ok
from relay import ratelimit
from relay.catalog import MODELS_BY_CHANNEL_TYPE

THEMES = ("default", "berry", "air")
# Options whose value must parse as a JSON object of numbers.
RATIO_OPTIONS = ("ModelRatio", "CompletionRatio", "GroupRatio")


class OptionPage(PublicView):
    """`/api/notice`, `/api/about`, `/api/home_page_content`: one option's text."""

    option_key = ""

    def get(self, request: Request) -> Response:
        return ok(options.get_str(self.option_key))


def is_secret(key: str) -> bool:
    return key.endswith(("Token", "Secret"))


def option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    raise ApiError("value: 必须是字符串")


def validate_option(key: str, value: str) -> None:
    """One API's checks, plus: known keys only, booleans, numbers and ratio JSON parse."""
    defaults = options.default_options()
    if key not in defaults:
        raise ApiError(f"key: 未知的配置项 {key}")
    default = defaults[key]
    if default in ("true", "false") and value not in ("true", "false"):
        raise ApiError(f"{key}: 必须是 true 或 false")
    if key in RATIO_OPTIONS:
        try:
            parsed = json.loads(value)
        except ValueError as error:
            raise ApiError(f"{key}: 不是合法的 JSON：{error}") from None
        if not isinstance(parsed, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in parsed.values()
        ):
            raise ApiError(f"{key}: 必须是名称到数字的 JSON 对象")
    elif key == ratelimit.OPTION:
        try:
            ratelimit.validate_group_limits(value)
        except ValueError as error:
            raise ApiError(f"{key}: {error}") from None
    elif default.lstrip("-").replace(".", "", 1).isdigit():
        try:
            float(value)
        except ValueError:
            raise ApiError(f"{key}: 必须是数字") from None
    enabling = value == "true"
    if key == "Theme" and value not in THEMES:
        raise ApiError("无效的主题")
    if key == "GitHubOAuthEnabled" and enabling and not options.get_str("GitHubClientId"):
        raise ApiError(
            "无法启用 GitHub OAuth，请先填入 GitHub Client Id 以及 GitHub Client Secret！"
        )
    if key == "WeChatAuthEnabled" and enabling and not options.get_str("WeChatServerAddress"):
        raise ApiError("无法启用微信登录，请先填入微信登录相关配置信息！")
    if key == "TurnstileCheckEnabled" and enabling and not options.get_str("TurnstileSiteKey"):
        raise ApiError("无法启用 Turnstile 校验，请先填入 Turnstile 校验相关配置信息！")
    if (
        key == "EmailDomainRestrictionEnabled"
        and enabling
        and not options.get_str("EmailDomainWhitelist")
    ):
        raise ApiError("无法启用邮箱域名限制，请先填入限制的邮箱域名！")


class OptionView(RootView):
    def get(self, request: Request) -> Response:
        values = options.all_options()
        return ok([{"key": k, "value": v} for k, v in values.items() if not is_secret(k)])

    def put(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        key = data.get("key")
        if not isinstance(key, str) or not key:
            raise ApiError("key: 该字段是必填项。")
        value = option_text(data.get("value", ""))
        validate_option(key, value)
        options.set_option(key, value)
        return ok()


class GroupView(AdminView):
    def get(self, request: Request) -> Response:
        return ok(list(options.get_json("GroupRatio").keys()))


class ModelTableView(ApiView):
    """`GET /api/models`: channel type -> built-in model list, for the channel editor."""

    def get(self, request: Request) -> Response:
        return ok({str(k): v for k, v in MODELS_BY_CHANNEL_TYPE.items()})


def api_not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Unknown `/api` paths answer like One API's `RelayNotFound`."""
    return JsonResponse(
        {
            "error": {
                "message": f"Invalid URL ({request.method} {request.path})",
                "type": "invalid_request_error",
                "param": "",
                "code": "",
            }
        },
        status=404,
    )
