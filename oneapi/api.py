"""What every `/api` view shares: One API's envelope, authentication, roles, paging, limits.

Every answer is `{"success", "message", "data"}`. As in One API, almost every failure is an
HTTP 200 with `success: false`; the exceptions are a missing login (401), a malformed JSON
body (400) and the rate limiter (429 with an empty body).
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpResponse
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts.models import Role, User, UserStatus

logger = logging.getLogger(__name__)

ITEMS_PER_PAGE = 10  # One API's config.ItemsPerPage
NOT_LOGGED_IN = "无权进行此操作，未登录且未提供 access token"
INVALID_ACCESS_TOKEN = "无权进行此操作，access token 无效"
ROLE_TOO_LOW = "无权进行此操作，权限不足"
USER_BANNED = "用户已被封禁"


class ApiError(Exception):
    """A failure answered as `{"success": false, "message": ...}` (HTTP 200 unless told)."""

    def __init__(self, message: str, status: int = 200) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def ok(data: Any = None, message: str = "", **extra: Any) -> Response:
    body: dict[str, Any] = {"success": True, "message": message}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return Response(body)


def fail(message: str, status: int = 200) -> Response:
    return Response({"success": False, "message": message}, status=status)


def _validation_message(detail: Any, prefix: str = "") -> str:
    """The first validation error, naming its field: `name: 该字段是必填项。`."""
    if isinstance(detail, dict):
        for field, value in detail.items():
            name = f"{prefix}.{field}" if prefix else str(field)
            if field == "non_field_errors":
                name = prefix
            return _validation_message(value, name)
    if isinstance(detail, list) and detail:
        return _validation_message(detail[0], prefix)
    return f"{prefix}: {detail}" if prefix else str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | HttpResponse | None:
    if isinstance(exc, ApiError):
        return fail(exc.message, exc.status)
    if isinstance(exc, exceptions.Throttled):
        return HttpResponse(status=429)  # One API's limiter answers with no body
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        return fail(NOT_LOGGED_IN, 401)
    if isinstance(exc, exceptions.ParseError):
        return fail(f"无效的参数: {exc.detail}", 400)
    if isinstance(exc, exceptions.ValidationError):
        return fail(_validation_message(exc.detail))
    if isinstance(exc, exceptions.MethodNotAllowed | exceptions.NotFound):
        request = context["request"]
        return Response(
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
    if isinstance(exc, exceptions.APIException):
        return fail(str(exc.detail), exc.status_code)
    return None


class AccessTokenAuthentication(BaseAuthentication):
    """The user's system access token in `Authorization`, with or without `Bearer `."""

    def authenticate(self, request: Request) -> tuple[User, str] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        token = header.removeprefix("Bearer ").strip()
        if not token:
            return None
        if "\x00" in token or len(token) > 64:  # cannot be a token; and no query for it
            raise ApiError(INVALID_ACCESS_TOKEN)
        user = User.objects.filter(access_token=token).first()
        if user is None:
            raise ApiError(INVALID_ACCESS_TOKEN)
        return user, token


class CookieSessionAuthentication(SessionAuthentication):
    """The browser session, without DRF's CSRF token check.

    One API's front-ends send no CSRF token; the session cookie is SameSite=Lax, so a
    cross-site form cannot carry it on the POST/PUT/DELETE requests that change state."""

    def enforce_csrf(self, request: Request) -> None:
        return None


def client_ip(request: Request) -> str:
    return request.META.get("REMOTE_ADDR", "")


class GlobalApiThrottle(SimpleRateThrottle):
    """`GLOBAL_API_RATE_LIMIT` requests per IP per 3 minutes (One API's GA limiter); kept in
    the Django cache, which is Redis when configured, so every node shares the count."""

    scope = "global_api"
    window_seconds = 180

    def get_rate(self) -> str:
        return "configured"

    def parse_rate(self, rate: str | None) -> tuple[int | None, int | None]:
        limit = self.limit()
        return (limit or None, self.window_seconds if limit else None)

    def limit(self) -> int:
        return 0 if settings.DEBUG else settings.GLOBAL_API_RATE_LIMIT

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": client_ip(request)}


class CriticalThrottle(GlobalApiThrottle):
    """20 requests per 20 minutes per IP on login, registration and verification routes."""

    scope = "critical"
    window_seconds = 1200

    def limit(self) -> int:
        return 0 if settings.DEBUG else 20


class ApiView(APIView):
    """Base of every `/api` view: who may call it is `min_role` (GUEST = anyone)."""

    min_role: ClassVar[int] = Role.COMMON
    authentication_classes: ClassVar[list[type]] = [
        CookieSessionAuthentication,
        AccessTokenAuthentication,
    ]
    throttle_classes: ClassVar[list[type]] = [GlobalApiThrottle]

    def get_exception_handler(self):  # type: ignore[no-untyped-def]
        return exception_handler

    def perform_authentication(self, request: Request) -> None:
        """Deferred to `check_permissions`: the rate limit comes first, as in One API."""

    def check_throttles(self, request: Request) -> None:
        """Done in `check_permissions`, before authentication."""

    def check_permissions(self, request: Request) -> None:
        super().check_throttles(request)
        if any("\x00" in value for value in request.query_params.values()):
            raise ApiError("无效的参数", 400)  # PostgreSQL refuses NUL in text
        if self.min_role <= Role.GUEST:
            return
        user = request.user
        if user is None or not getattr(user, "is_authenticated", False):
            raise ApiError(NOT_LOGGED_IN, 401)
        if user.status != UserStatus.ENABLED:
            request._request.session.flush()
            raise ApiError(USER_BANNED)
        if user.role < self.min_role:
            raise ApiError(ROLE_TOO_LOW)


class AdminView(ApiView):
    min_role = Role.ADMIN


class RootView(ApiView):
    min_role = Role.ROOT


class PublicView(ApiView):
    min_role = Role.GUEST


MAX_PAGE = 1_000_000  # beyond it an offset overflows some databases' integer types


def page(request: Request) -> tuple[int, int]:
    """`?p=N` (0-based) and the page size, as (offset, limit)."""
    try:
        number = min(max(int(request.query_params.get("p", "0")), 0), MAX_PAGE)
    except ValueError:
        number = 0
    try:
        size = int(request.query_params.get("size", ITEMS_PER_PAGE))
    except ValueError:
        size = ITEMS_PER_PAGE
    size = min(max(size, 1), 100)
    return number * size, size


def int_param(request: Request, name: str, default: int = 0) -> int:
    """An integer query parameter; empty means the default (One API's pages send `x=`)."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(f"无效的参数: {name}") from None
