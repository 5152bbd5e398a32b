"""`/api/channel` routes (admin): channel CRUD, the channel test and balances.

Keys are write-only: no answer of these routes ever carries one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db.models import Q, QuerySet
from rest_framework.request import Request
from rest_framework.response import Response

from channels_mgmt import balance, services, testing
from channels_mgmt.models import Channel
from channels_mgmt.serializers import (
    ChannelCreateSerializer,
    ChannelUpdateSerializer,
    channel_json,
    channels_json,
)
from oneapi.api import AdminView, ApiError, ok, page
from relay.catalog import MODEL_CATALOG
from relay.info import model_object

if TYPE_CHECKING:
    from celery import Task

CHANNEL_NOT_FOUND = "渠道不存在"

logger = logging.getLogger(__name__)


def get_channel(pk: int) -> Channel:
    channel = Channel.objects.filter(pk=pk).first()
    if channel is None:
        raise ApiError(CHANNEL_NOT_FOUND)
    return channel


def search_channels(keyword: str) -> QuerySet[Channel]:
    """One API's search: the id equal to the keyword, or the name starting with it."""
    condition = Q(name__startswith=keyword)
    if keyword.isdigit():
        condition |= Q(pk=int(keyword))
    return Channel.objects.filter(condition).order_by("-id")


def builtin_models() -> list[dict[str, Any]]:
    """Every built-in model once, in catalog order (One API's list repeats shared names)."""
    return [model_object(name) for name in dict.fromkeys(name for name, _ in MODEL_CATALOG)]


def queue(task: Task, *args: Any) -> None:
    """Hand the work to a Celery worker; a broker that is down fails this request only.

    Callers import the task module where they queue: Celery then loads on the first queued
    job instead of in every web process (~7 MB that a relay-only node never uses)."""
    try:
        task.delay(*args)
    except Exception as error:
        logger.exception("could not queue %s", task.name)
        raise ApiError(f"无法启动后台任务：{error}") from None


def request_body(request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ApiError("无效的参数")
    return request.data


class ChannelCollectionView(AdminView):
    def get(self, request: Request) -> Response:
        offset, limit = page(request)
        return ok(channels_json(Channel.objects.order_by("-id")[offset : offset + limit]))

    def post(self, request: Request) -> Response:
        serializer = ChannelCreateSerializer(data=request_body(request))
        serializer.is_valid(raise_exception=True)
        created = services.create_channels(serializer.changes())
        return ok(channels_json(created))

    def put(self, request: Request) -> Response:
        serializer = ChannelUpdateSerializer(data=request_body(request))
        serializer.is_valid(raise_exception=True)
        channel_id = serializer.validated_data["id"]
        try:
            channel = services.update_channel(channel_id, serializer.changes())
        except Channel.DoesNotExist:
            raise ApiError(CHANNEL_NOT_FOUND) from None
        return ok(channel_json(channel))


class ChannelDetailView(AdminView):
    def get(self, request: Request, pk: str) -> Response:
        return ok(channel_json(get_channel(int(pk))))

    def delete(self, request: Request, pk: str) -> Response:
        if not services.delete_channel(int(pk)):
            raise ApiError(CHANNEL_NOT_FOUND)
        return ok()


class ChannelSearchView(AdminView):
    def get(self, request: Request) -> Response:
        keyword = request.query_params.get("keyword", "").strip()
        return ok(channels_json(search_channels(keyword)))


class DisabledChannelsView(AdminView):
    def delete(self, request: Request) -> Response:
        return ok(services.delete_disabled_channels())


class ChannelModelsView(AdminView):
    """One API answers `{"object": "list", "data": [...]}` here; `success` is added."""

    def get(self, request: Request) -> Response:
        return ok(builtin_models(), object="list")


class ChannelTestView(AdminView):
    def get(self, request: Request, pk: str) -> Response:
        model = request.query_params.get("model", "").strip() or None
        try:
            result = testing.test_channel(int(pk), model)
        except Channel.DoesNotExist:
            raise ApiError(CHANNEL_NOT_FOUND) from None
        # One API answers `modelName`; its own channel table reads `model`.
        return Response(
            {
                "success": result.success,
                "message": result.message,
                "time": result.seconds,
                "modelName": result.model,
                "model": result.model,
            }
        )


class AllChannelsTestView(AdminView):
    def get(self, request: Request) -> Response:
        scope = request.query_params.get("scope", "").strip() or "all"
        if scope not in testing.SCOPES:
            raise ApiError(f"scope: 必须是 {' 或 '.join(testing.SCOPES)}")
        if testing.is_running():
            raise ApiError(testing.ALREADY_RUNNING)
        from channels_mgmt.tasks import test_all_channels_task

        queue(test_all_channels_task, scope)
        return ok()


class ChannelBalanceView(AdminView):
    def get(self, request: Request, pk: str) -> Response:
        try:
            amount = balance.update_balance(int(pk))
        except Channel.DoesNotExist:
            raise ApiError(CHANNEL_NOT_FOUND) from None
        except balance.BalanceError as error:
            raise ApiError(str(error)) from None
        return ok(balance=amount)


class UpdateAllBalancesView(AdminView):
    """One API's handler is a no-op; here the refresh is queued for a worker."""

    def get(self, request: Request) -> Response:
        from channels_mgmt.tasks import update_all_balances_task

        queue(update_all_balances_task)
        return ok()
