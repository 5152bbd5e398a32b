"""The relay's informational routes: models, the dashboard billing twins, 501 and 404."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from accounts.models import User
from billing.models import ApiKey
from relay.caller import Caller, authenticate
from relay.catalog import MODEL_OWNERS
from relay.errors import INVALID_REQUEST_ERROR, ONE_API_ERROR
from relay.http import Request, Response, json_response

MODEL_CREATED = 1626777600
UNLIMITED_AMOUNT = 100_000_000


def _permission() -> list[dict[str, Any]]:
    return [
        {
            "id": "modelperm-LwHkVFn8AcMItP432fKKDIKJ",
            "object": "model_permission",
            "created": MODEL_CREATED,
            "allow_create_engine": True,
            "allow_sampling": True,
            "allow_logprobs": True,
            "allow_search_indices": False,
            "allow_view": True,
            "allow_fine_tuning": False,
            "organization": "*",
            "group": None,
            "is_blocking": False,
        }
    ]


def model_object(name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": MODEL_CREATED,
        "owned_by": MODEL_OWNERS.get(name, "custom"),
        "permission": _permission(),
        "root": name,
        "parent": None,
    }


def visible_models(caller: Caller) -> list[str]:
    """The key's own model list when it has one, else what the user's group can reach."""
    if caller.key.models is not None:
        return sorted(caller.key.models)
    return caller.table.models_for_group(caller.user.group)


async def list_models(request: Request) -> Response:
    caller = await authenticate(request)
    data = [model_object(name) for name in visible_models(caller)]
    return json_response(200, {"object": "list", "data": data})


async def retrieve_model(request: Request) -> Response:
    await authenticate(request)
    name = request.params["model"]
    if name in MODEL_OWNERS:
        return json_response(200, model_object(name))
    # One API answers 200 with an error object here; clients rely on the body, keep it.
    return json_response(
        200,
        {
            "error": {
                "message": f"The model '{name}' does not exist",
                "type": INVALID_REQUEST_ERROR,
                "param": "model",
                "code": "model_not_found",
            }
        },
    )


def _usage_numbers(caller: Caller) -> tuple[int, int, int]:
    """(remaining, used, expires) of the key, or of its owner when key stats are hidden."""
    if caller.options.get_bool("DisplayTokenStatEnabled"):
        used = ApiKey.objects.filter(pk=caller.key.id).values_list("used_quota", flat=True)
        remaining = (
            UNLIMITED_AMOUNT
            if caller.key.unlimited_quota
            else caller.runtime.ledger.key_available(caller.key.id)
        )
        return remaining, used.first() or 0, max(caller.key.expired_time, 0)
    used = User.objects.filter(pk=caller.user.id).values_list("used_quota", flat=True)
    return caller.runtime.ledger.user_available(caller.user.id), used.first() or 0, 0


def _amount(caller: Caller, quota: int) -> float:
    if caller.options.get_bool("DisplayInCurrencyEnabled"):
        return quota / (caller.options.get_float("QuotaPerUnit") or 500000)
    return float(quota)


async def billing_subscription(request: Request) -> Response:
    caller = await authenticate(request)
    remaining, used, expires = await sync_to_async(_usage_numbers, thread_sensitive=True)(caller)
    total = remaining if remaining == UNLIMITED_AMOUNT else remaining + used
    amount = float(UNLIMITED_AMOUNT) if remaining == UNLIMITED_AMOUNT else _amount(caller, total)
    return json_response(
        200,
        {
            "object": "billing_subscription",
            "has_payment_method": True,
            "soft_limit_usd": amount,
            "hard_limit_usd": amount,
            "system_hard_limit_usd": amount,
            "access_until": expires,
        },
    )


async def billing_usage(request: Request) -> Response:
    caller = await authenticate(request)
    _, used, _ = await sync_to_async(_usage_numbers, thread_sensitive=True)(caller)
    return json_response(200, {"object": "list", "total_usage": _amount(caller, used) * 100})


async def not_implemented(request: Request) -> Response:
    await authenticate(request)
    return json_response(
        501,
        {
            "error": {
                "message": "API not implemented",
                "type": ONE_API_ERROR,
                "param": "",
                "code": "api_not_implemented",
            }
        },
    )


async def not_found(request: Request) -> Response:
    return json_response(
        404,
        {
            "error": {
                "message": f"Invalid URL ({request.method} {request.raw_path})",
                "type": INVALID_REQUEST_ERROR,
                "param": "",
                "code": "",
            }
        },
    )
