"""`/api/user` routes for the caller's own account and for user administration."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import update_session_auth_hash
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.serializers import (
    ManageSerializer,
    SelfUpdateSerializer,
    UserCreateSerializer,
    UserUpdateSerializer,
)
from oneapi.api import AdminView, ApiError, ApiView, CookieSessionAuthentication, ok, page


def validated(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def by_session(request: Request) -> bool:
    return isinstance(request.successful_authenticator, CookieSessionAuthentication)


class SelfView(ApiView):
    def get(self, request: Request) -> Response:
        return ok(services.public_user(request.user))

    def put(self, request: Request) -> Response:
        data = validated(SelfUpdateSerializer, request)
        user = services.update_self(request.user.pk, **data)
        if data.get("password") and by_session(request):
            # Keep this browser logged in; the user's other sessions end with the old hash.
            update_session_auth_hash(request._request, user)
        return ok()

    def delete(self, request: Request) -> Response:
        services.delete_self(request.user.pk)
        if by_session(request):
            request._request.session.flush()
        return ok()


class AccessTokenView(ApiView):
    def get(self, request: Request) -> Response:
        return ok(services.regenerate_access_token(request.user.pk))


class AffiliateCodeView(ApiView):
    def get(self, request: Request) -> Response:
        return ok(services.affiliate_code(request.user.pk))


class AvailableModelsView(ApiView):
    def get(self, request: Request) -> Response:
        return ok(services.available_models(request.user))


class UsersView(AdminView):
    def get(self, request: Request) -> Response:
        offset, limit = page(request)
        return ok(services.list_users(offset, limit, request.query_params.get("order", "")))

    def post(self, request: Request) -> Response:
        services.create_user(request.user, **validated(UserCreateSerializer, request))
        return ok()

    def put(self, request: Request) -> Response:
        data = validated(UserUpdateSerializer, request)
        services.update_user(request.user, data.pop("id"), **data)
        return ok()


class UserSearchView(AdminView):
    def get(self, request: Request) -> Response:
        return ok(services.search_users(request.query_params.get("keyword", "")))


def user_id(pk: str) -> int:
    number = int(pk)
    if number > services.MAX_ID:  # beyond any database integer: no such user, not a query error
        raise ApiError(services.USER_NOT_FOUND)
    return number


class UserDetailView(AdminView):
    def get(self, request: Request, pk: str) -> Response:
        return ok(services.get_user(request.user, user_id(pk)))

    def delete(self, request: Request, pk: str) -> Response:
        services.delete_user(request.user, user_id(pk))
        return ok()


class ManageView(AdminView):
    def post(self, request: Request) -> Response:
        data = validated(ManageSerializer, request)
        return ok(services.manage_user(request.user, data["username"], data["action"]))
