"""`/api` routes for API keys, logs, redemption codes and top-ups (logic in billing.services)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing import services
from billing.serializers import (
    AdminTopUpSerializer,
    RedeemSerializer,
    RedemptionCreateSerializer,
    RedemptionStatusSerializer,
    RedemptionUpdateSerializer,
    TokenSerializer,
    TokenStatusSerializer,
    TokenUpdateSerializer,
)
from oneapi.api import AdminView, ApiError, ApiView, ok, page


def valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def status_only(request: Request) -> bool:
    """One API treats any non-empty `status_only` as set."""
    return bool(request.query_params.get("status_only", ""))


# --- API keys ("tokens"): every route sees only the caller's own keys ---------------------


class TokenCollectionView(ApiView):
    def get(self, request: Request) -> Response:
        offset, limit = page(request)
        order = request.query_params.get("order", "")
        keys = services.list_tokens(request.user.pk, offset, limit, order)
        return ok([services.token_json(key) for key in keys])

    def post(self, request: Request) -> Response:
        key = services.create_token(request.user.pk, valid(TokenSerializer, request))
        return ok(services.token_json(key))

    def put(self, request: Request) -> Response:
        only = status_only(request)
        fields = valid(TokenStatusSerializer if only else TokenUpdateSerializer, request)
        key = services.update_token(request.user.pk, fields, status_only=only)
        return ok(services.token_json(key))


class TokenSearchView(ApiView):
    def get(self, request: Request) -> Response:
        keyword = request.query_params.get("keyword", "")
        keys = services.search_tokens(request.user.pk, keyword)
        return ok([services.token_json(key) for key in keys])


class TokenItemView(ApiView):
    def get(self, request: Request, pk: str) -> Response:
        return ok(services.token_json(services.get_token(request.user.pk, int(pk))))

    def delete(self, request: Request, pk: str) -> Response:
        services.delete_token(request.user.pk, int(pk))
        return ok()


# --- logs -------------------------------------------------------------------------------


def number(request: Request, name: str) -> int:
    """A numeric filter, 0 (= any) when empty or unparseable, as in One API: its log page
    always sends `channel=` and sends `NaN` for a cleared date field."""
    try:
        return int(request.query_params.get(name, "") or 0)
    except ValueError:
        return 0


def log_filter(request: Request, *, admin: bool) -> services.LogFilter:
    """The query parameters; `username` and `channel` only on the admin routes."""
    params = request.query_params
    return services.LogFilter(
        type=number(request, "type"),
        start_timestamp=number(request, "start_timestamp"),
        end_timestamp=number(request, "end_timestamp"),
        model_name=params.get("model_name", ""),
        token_name=params.get("token_name", ""),
        username=params.get("username", "") if admin else "",
        channel=number(request, "channel") if admin else 0,
    )


class LogView(AdminView):
    def get(self, request: Request) -> Response:
        offset, limit = page(request)
        logs = services.list_logs(log_filter(request, admin=True), offset, limit)
        return ok([services.log_json(log) for log in logs])

    def delete(self, request: Request) -> Response:
        return ok(services.delete_logs_before(number(request, "target_timestamp")))


class LogStatView(AdminView):
    def get(self, request: Request) -> Response:
        return ok({"quota": services.sum_consumed_quota(log_filter(request, admin=True))})


class LogSearchView(AdminView):
    def get(self, request: Request) -> Response:
        logs = services.search_all_logs(request.query_params.get("keyword", ""))
        return ok([services.log_json(log) for log in logs])


class SelfLogView(ApiView):
    def get(self, request: Request) -> Response:
        offset, limit = page(request)
        filters = log_filter(request, admin=False)
        logs = services.list_logs(filters, offset, limit, user_id=request.user.pk)
        return ok([services.log_json(log, with_id=False) for log in logs])


class SelfLogSearchView(ApiView):
    def get(self, request: Request) -> Response:
        keyword = request.query_params.get("keyword", "")
        logs = services.search_user_logs(request.user.pk, keyword)
        return ok([services.log_json(log, with_id=False) for log in logs])


class SelfLogStatView(ApiView):
    def get(self, request: Request) -> Response:
        # By user id: One API sums by username, which misses logs from before a rename.
        filters = log_filter(request, admin=False)
        return ok({"quota": services.sum_consumed_quota(filters, user_id=request.user.pk)})


class DashboardView(ApiView):
    def get(self, request: Request) -> Response:
        return ok(services.dashboard(request.user.pk))


# --- redemption codes (admin) -----------------------------------------------------------


class RedemptionCollectionView(AdminView):
    def get(self, request: Request) -> Response:
        offset, limit = page(request)
        codes = services.list_redemptions(offset, limit)
        return ok([services.redemption_json(code) for code in codes])

    def post(self, request: Request) -> Response:
        fields = valid(RedemptionCreateSerializer, request)
        keys = services.create_redemptions(
            request.user.pk, fields["name"], fields["quota"], fields["count"]
        )
        return ok(keys)

    def put(self, request: Request) -> Response:
        if status_only(request):
            fields = valid(RedemptionStatusSerializer, request)
            code = services.set_redemption_status(fields["id"], fields["status"])
        else:
            code = services.update_redemption(valid(RedemptionUpdateSerializer, request))
        return ok(services.redemption_json(code))


class RedemptionSearchView(AdminView):
    def get(self, request: Request) -> Response:
        codes = services.search_redemptions(request.query_params.get("keyword", ""))
        return ok([services.redemption_json(code) for code in codes])


class RedemptionItemView(AdminView):
    def get(self, request: Request, pk: str) -> Response:
        return ok(services.redemption_json(services.get_redemption(int(pk))))

    def delete(self, request: Request, pk: str) -> Response:
        services.delete_redemption(int(pk))
        return ok()


class RedemptionExportView(AdminView):
    """`GET /api/redemption/export?name=`: one batch as CSV (not in One API)."""

    def get(self, request: Request) -> HttpResponse:
        name = request.query_params.get("name", "")
        if not name:
            raise ApiError("name: 该字段是必填项。")
        response = HttpResponse(
            services.export_redemptions(name), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f"attachment; filename=\"redemptions.csv\"; filename*=UTF-8''{quote(name, safe='')}.csv"
        )
        return response


# --- top-ups ----------------------------------------------------------------------------


class RedeemView(ApiView):
    """`POST /api/user/topup {key}`: redeem a code; `data` is the quota added."""

    def post(self, request: Request) -> Response:
        key = valid(RedeemSerializer, request)["key"]
        return ok(services.redeem(request.user, key))


class AdminTopUpView(AdminView):
    """`POST /api/topup {user_id, quota, remark}`: the payment-system hook."""

    def post(self, request: Request) -> Response:
        fields = valid(AdminTopUpSerializer, request)
        services.admin_top_up(fields["user_id"], fields["quota"], fields["remark"])
        return ok()
