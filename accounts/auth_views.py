"""One API's login, registration, verification, reset, OAuth and WeChat routes. The rules are
in `auth_services`; these views read the input, run Turnstile where One API does, and answer."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth import logout
from rest_framework import serializers
from rest_framework.exceptions import ParseError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import auth_services, oauth, turnstile, wechat
from accounts.serializers import password_field, username_field
from oneapi.api import ApiError, ApiView, CriticalThrottle, GlobalApiThrottle, PublicView, ok

CRITICAL: list[type] = [GlobalApiThrottle, CriticalThrottle]


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.data
    except ParseError:
        raise ApiError(auth_services.INVALID_PARAMS) from None
    return data if isinstance(data, dict) else {}


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


class RegisterSerializer(serializers.Serializer):
    username = username_field(required=True)
    password = password_field(required=True)
    email = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    verification_code = serializers.CharField(required=False, allow_blank=True, default="")
    aff_code = serializers.CharField(required=False, allow_blank=True, default="")


class CriticalPublicView(PublicView):
    throttle_classes: ClassVar[list[type]] = CRITICAL


class CriticalUserView(ApiView):
    throttle_classes: ClassVar[list[type]] = CRITICAL


class LoginView(CriticalPublicView):
    def post(self, request: Request) -> Response:
        data = _body(request)
        user = auth_services.authenticate_password(
            _text(data, "username").strip(), _text(data, "password")
        )
        return ok(auth_services.start_session(request._request, user))


class LogoutView(PublicView):
    def get(self, request: Request) -> Response:
        logout(request._request)
        return ok()


class RegisterView(CriticalPublicView):
    def post(self, request: Request) -> Response:
        turnstile.check(request._request)
        auth_services.check_registration_open()
        serializer = RegisterSerializer(data=_body(request))
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        auth_services.register(
            fields["username"],
            fields["password"],
            email=fields["email"],
            code=fields["verification_code"],
            aff_code=fields["aff_code"],
        )
        return ok()


class VerificationView(CriticalPublicView):
    def get(self, request: Request) -> Response:
        turnstile.check(request._request)
        auth_services.send_verification_code(request.query_params.get("email", ""))
        return ok()


class ResetPasswordEmailView(CriticalPublicView):
    def get(self, request: Request) -> Response:
        turnstile.check(request._request)
        auth_services.send_password_reset(request.query_params.get("email", ""))
        return ok()


class ResetPasswordView(CriticalPublicView):
    def post(self, request: Request) -> Response:
        data = _body(request)
        password = auth_services.reset_password(_text(data, "email"), _text(data, "token"))
        return ok(password)


class OAuthStateView(CriticalPublicView):
    def get(self, request: Request) -> Response:
        return ok(auth_services.new_oauth_state(request._request))


def _signed_in(outcome: dict[str, Any] | None) -> Response:
    return ok(message="bind") if outcome is None else ok(outcome)


class GitHubOAuthView(CriticalPublicView):
    def get(self, request: Request) -> Response:
        auth_services.check_oauth_state(request._request)
        auth_services.check_github_enabled()
        identity = oauth.github_identity(request._request, request.query_params.get("code", ""))
        return _signed_in(auth_services.oauth_sign_in(request._request, identity))


class LarkOAuthView(CriticalPublicView):
    def get(self, request: Request) -> Response:
        auth_services.check_oauth_state(request._request)
        identity = oauth.lark_identity(request._request, request.query_params.get("code", ""))
        return _signed_in(auth_services.oauth_sign_in(request._request, identity))


class WeChatAuthView(CriticalPublicView):
    def get(self, request: Request) -> Response:
        auth_services.check_wechat_enabled()
        openid = wechat.openid_for_code(request.query_params.get("code", ""))
        user = auth_services.external_user(oauth.WECHAT, openid)
        return ok(auth_services.start_session(request._request, user))


class WeChatBindView(CriticalUserView):
    def get(self, request: Request) -> Response:
        auth_services.check_wechat_enabled()
        openid = wechat.openid_for_code(request.query_params.get("code", ""))
        auth_services.bind_external(request.user, oauth.WECHAT, openid)
        return ok()


class EmailBindView(CriticalUserView):
    def get(self, request: Request) -> Response:
        auth_services.bind_email(
            request.user,
            request.query_params.get("email", ""),
            request.query_params.get("code", ""),
        )
        return ok()
