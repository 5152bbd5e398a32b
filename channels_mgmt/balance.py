"""Channel balances from the providers that report one (One API's `channel-billing.go`).

Each supported channel type has its provider's endpoint and answer format. The channel's
own base URL is used when it has one (One API hard-codes most hosts), so a mirror or a
regional endpoint reports its own balance. A type without a balance endpoint fails with
One API's "尚未实现".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from channels_mgmt.models import Channel, ChannelStatus
from channels_mgmt.services import set_channel_status
from oneapi import options
from relay.catalog import ChannelType

logger = logging.getLogger(__name__)

NOT_IMPLEMENTED = "尚未实现"
TIMEOUT = httpx.Timeout(20.0, connect=10.0)

Fetch = Callable[[httpx.Client, str, str], float]


class BalanceError(Exception):
    """The balance could not be read; the message is what the admin sees."""


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _get_json(
    client: httpx.Client,
    url: str,
    headers: dict[str, str],
    params: dict[str, str] | None = None,
) -> dict[str, Any]:
    try:
        response = client.get(url, headers=headers, params=params)
    except httpx.HTTPError as error:
        raise BalanceError(f"请求失败：{error or type(error).__name__}") from None
    if response.status_code != 200:
        raise BalanceError(f"status code: {response.status_code}")
    try:
        data = response.json()
    except ValueError:
        raise BalanceError("余额接口返回的不是 JSON") from None
    if not isinstance(data, dict):
        raise BalanceError("余额接口返回的不是 JSON 对象")
    return data


def _number(value: Any) -> float:
    """A JSON number, or a number in a string (SiliconFlow, DeepSeek, OpenAI-SB); absent = 0,
    as Go's zero value."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        raise BalanceError(f"余额格式错误：{value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise BalanceError(f"余额格式错误：{value!r}") from None


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def openai_subscription(client: httpx.Client, base: str, key: str) -> float:
    """The legacy dashboard endpoints: hard limit minus this month's usage (in cents)."""
    subscription = _get_json(client, f"{base}/v1/dashboard/billing/subscription", _bearer(key))
    today = timezone.localdate()
    start = today.replace(day=1)
    if not subscription.get("has_payment_method"):
        start = today - timedelta(days=100)
    usage = _get_json(
        client,
        f"{base}/v1/dashboard/billing/usage",
        _bearer(key),
        {"start_date": start.isoformat(), "end_date": today.isoformat()},
    )
    return _number(subscription.get("hard_limit_usd")) - _number(usage.get("total_usage")) / 100


def credit_grants(field_name: str) -> Fetch:
    """`/dashboard/billing/credit_grants`; resellers name the remaining amount differently."""

    def fetch(client: httpx.Client, base: str, key: str) -> float:
        data = _get_json(client, f"{base}/dashboard/billing/credit_grants", _bearer(key))
        return _number(data.get(field_name))

    return fetch


def openai_sb(client: httpx.Client, base: str, key: str) -> float:
    data = _get_json(client, f"{base}/sb-api/user/status", _bearer(key), {"api_key": key})
    status = data.get("data")
    if not isinstance(status, dict):
        raise BalanceError(str(data.get("msg") or "余额接口没有返回数据"))
    return _number(status.get("credit"))


def aiproxy(client: httpx.Client, base: str, key: str) -> float:
    data = _get_json(client, f"{base}/api/report/getUserOverview", {"Api-Key": key})
    if not data.get("success"):
        raise BalanceError(f"code: {data.get('error_code', 0)}, message: {data.get('message', '')}")
    return _number(_object(data, "data").get("totalPoints"))


def siliconflow(client: httpx.Client, base: str, key: str) -> float:
    data = _get_json(client, f"{base}/v1/user/info", _bearer(key))
    if data.get("code") != 20000:
        raise BalanceError(f"code: {data.get('code', 0)}, message: {data.get('message', '')}")
    return _number(_object(data, "data").get("totalBalance"))


def deepseek(client: httpx.Client, base: str, key: str) -> float:
    """The CNY balance, as One API (the table shows DeepSeek balances in yuan)."""
    data = _get_json(client, f"{base}/user/balance", _bearer(key))
    for info in data.get("balance_infos") or ():
        if isinstance(info, dict) and info.get("currency") == "CNY":
            return _number(info.get("total_balance"))
    raise BalanceError("currency CNY not found")


def openrouter(client: httpx.Client, base: str, key: str) -> float:
    credits = _object(_get_json(client, f"{base}/v1/credits", _bearer(key)), "data")
    return _number(credits.get("total_credits")) - _number(credits.get("total_usage"))


@dataclass(frozen=True)
class Provider:
    fetch: Fetch
    # Used when the channel has no base URL of its own; "" means the channel must have one.
    default_base: str


PROVIDERS: dict[int, Provider] = {
    ChannelType.OPENAI: Provider(openai_subscription, "https://api.openai.com"),
    ChannelType.CUSTOM: Provider(openai_subscription, ""),
    ChannelType.CLOSEAI: Provider(
        credit_grants("total_available"), "https://api.closeai-proxy.xyz"
    ),
    ChannelType.OPENAI_SB: Provider(openai_sb, "https://api.openai-sb.com"),
    ChannelType.AIPROXY: Provider(aiproxy, "https://aiproxy.io"),
    ChannelType.API2GPT: Provider(credit_grants("total_remaining"), "https://api.api2gpt.com"),
    ChannelType.AIGC2D: Provider(credit_grants("total_available"), "https://api.aigc2d.com"),
    ChannelType.SILICONFLOW: Provider(siliconflow, "https://api.siliconflow.cn"),
    ChannelType.DEEPSEEK: Provider(deepseek, "https://api.deepseek.com"),
    ChannelType.OPENROUTER: Provider(openrouter, "https://openrouter.ai/api"),
}


def supports_balance(channel_type: int) -> bool:
    return channel_type in PROVIDERS


def balance_base(channel: Channel, provider: Provider) -> str:
    """The URL the provider's paths hang off; a base URL ending in `/v1` is forgiven, as in
    the relay (the paths above carry their own `/v1`)."""
    base = (channel.base_url or provider.default_base).strip().rstrip("/")
    if not base:
        raise BalanceError("渠道未设置 Base URL")
    return base.removesuffix("/v1")


def build_client() -> httpx.Client:
    return httpx.Client(
        timeout=TIMEOUT,
        proxy=settings.RELAY_PROXY or None,
        trust_env=False,
        follow_redirects=False,
    )


def fetch_balance(channel: Channel) -> float:
    provider = PROVIDERS.get(channel.type)
    if provider is None:
        raise BalanceError(NOT_IMPLEMENTED)
    base = balance_base(channel, provider)
    with build_client() as client:
        return provider.fetch(client, base, channel.key)


def update_balance(channel_id: int) -> float:
    """Read and store one channel's balance. Raises `Channel.DoesNotExist`, `BalanceError`."""
    channel = Channel.objects.get(pk=channel_id)
    balance = fetch_balance(channel)
    # Display only: the relay never reads it, so no cache needs invalidating.
    Channel.objects.filter(pk=channel.pk).update(
        balance=balance, balance_updated_time=int(time.time())
    )
    return balance


@dataclass
class BalanceSummary:
    updated: int = 0
    failed: int = 0
    disabled: list[int] = field(default_factory=list)


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def update_all_balances() -> BalanceSummary:
    """Every enabled channel whose provider reports a balance, `POLLING_INTERVAL` apart.

    An empty balance disables the channel when AutomaticDisableChannelEnabled is on (One
    API's unused `updateAllChannelsBalance` does so unconditionally)."""
    summary = BalanceSummary()
    channel_ids = list(
        Channel.objects.filter(status=ChannelStatus.ENABLED, type__in=list(PROVIDERS))
        .order_by("id")
        .values_list("pk", flat=True)
    )
    for index, channel_id in enumerate(channel_ids):
        if index and settings.POLLING_INTERVAL:
            _pause(settings.POLLING_INTERVAL)
        try:
            balance = update_balance(channel_id)
        except Channel.DoesNotExist:
            continue
        except BalanceError as error:
            summary.failed += 1
            logger.info("balance of channel #%s not updated: %s", channel_id, error)
            continue
        summary.updated += 1
        if (
            balance <= 0
            and options.get_bool("AutomaticDisableChannelEnabled")
            and set_channel_status(channel_id, ChannelStatus.AUTO_DISABLED)
        ):
            logger.warning("channel #%s disabled automatically: 余额不足", channel_id)
            summary.disabled.append(channel_id)
    return summary
