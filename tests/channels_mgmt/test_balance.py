from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from channels_mgmt import balance, tasks
from channels_mgmt.models import Channel, ChannelStatus
from oneapi import options
from relay.catalog import ChannelType
from tests.conftest import free_port
from tests.factories import make_channel
from tests.fakes.balance_upstreams import FakeBalanceProviders
from tests.fakes.http_proxy import HttpProxy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.socks_proxy import SocksProxy

pytestmark = pytest.mark.django_db

KEY = "sk-balance"


@pytest.fixture
def providers() -> Iterator[FakeBalanceProviders]:
    with FakeBalanceProviders(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as fake:
        fake.hard_limit_usd = 120.0
        fake.total_usage = 2500.0  # cents
        yield fake


def stored(channel: Channel) -> tuple[float, int]:
    channel.refresh_from_db()
    return channel.balance, channel.balance_updated_time


@pytest.mark.parametrize(
    ("channel_type", "expected", "path"),
    [
        (ChannelType.CLOSEAI, 12.5, "/dashboard/billing/credit_grants"),
        (ChannelType.API2GPT, 12.5, "/dashboard/billing/credit_grants"),
        (ChannelType.AIGC2D, 12.5, "/dashboard/billing/credit_grants"),
        (ChannelType.OPENAI_SB, 12.34, "/sb-api/user/status"),
        (ChannelType.AIPROXY, 42.5, "/api/report/getUserOverview"),
        (ChannelType.SILICONFLOW, 7.89, "/v1/user/info"),
        (ChannelType.DEEPSEEK, 110.5, "/user/balance"),
        (ChannelType.OPENROUTER, 17.75, "/v1/credits"),
    ],
)
def test_each_provider_balance_is_read_and_stored(
    providers: FakeBalanceProviders, channel_type: int, expected: float, path: str
) -> None:
    channel = make_channel(type=channel_type, key=KEY, base_url=providers.base_url)
    before = int(time.time())

    assert balance.update_balance(channel.pk) == pytest.approx(expected)

    amount, updated = stored(channel)
    assert amount == pytest.approx(expected)
    assert updated >= before
    assert providers.last_request.path == path


def test_provider_credentials_travel_as_each_provider_wants(
    providers: FakeBalanceProviders,
) -> None:
    sb = make_channel(type=ChannelType.OPENAI_SB, key=KEY, base_url=providers.base_url)
    aiproxy = make_channel(type=ChannelType.AIPROXY, key=KEY, base_url=providers.base_url)

    balance.update_balance(sb.pk)
    assert providers.last_request.query == {"api_key": KEY}
    balance.update_balance(aiproxy.pk)
    assert providers.last_request.headers["api-key"] == KEY


@pytest.mark.parametrize(
    ("channel_type", "message"),
    [
        (ChannelType.CLOSEAI, "status code: 401"),
        (ChannelType.OPENAI_SB, "api_key 不存在"),
        (ChannelType.AIPROXY, "code: 401, message: 无效的 Api-Key"),
        (ChannelType.SILICONFLOW, "status code: 401"),
        (ChannelType.DEEPSEEK, "status code: 401"),
        (ChannelType.OPENROUTER, "status code: 401"),
    ],
)
def test_a_wrong_key_fails_and_keeps_the_old_balance(
    providers: FakeBalanceProviders, channel_type: int, message: str
) -> None:
    channel = make_channel(
        type=channel_type, key="sk-wrong", base_url=providers.base_url, balance=3.0
    )

    with pytest.raises(balance.BalanceError, match=message):
        balance.update_balance(channel.pk)

    assert stored(channel) == (3.0, 0)


def test_provider_specific_failures(providers: FakeBalanceProviders) -> None:
    silicon = make_channel(type=ChannelType.SILICONFLOW, key=KEY, base_url=providers.base_url)
    deepseek = make_channel(type=ChannelType.DEEPSEEK, key=KEY, base_url=providers.base_url)
    providers.siliconflow_code = 40001
    providers.deepseek_cny = None

    with pytest.raises(balance.BalanceError, match="code: 40001, message: 账户异常"):
        balance.update_balance(silicon.pk)
    with pytest.raises(balance.BalanceError, match="currency CNY not found"):
        balance.update_balance(deepseek.pk)


def test_server_errors_and_unreachable_hosts_fail(providers: FakeBalanceProviders) -> None:
    channel = make_channel(type=ChannelType.CLOSEAI, key=KEY, base_url=providers.base_url)
    providers.status_override = 502
    with pytest.raises(balance.BalanceError, match="status code: 502"):
        balance.update_balance(channel.pk)

    gone = make_channel(
        type=ChannelType.CLOSEAI, key=KEY, base_url=f"http://127.0.0.1:{free_port()}"
    )
    with pytest.raises(balance.BalanceError, match="请求失败"):
        balance.update_balance(gone.pk)


@pytest.mark.parametrize("channel_type", [ChannelType.OPENAI, ChannelType.CUSTOM])
def test_openai_legacy_subscription_minus_usage(openai: FakeOpenAI, channel_type: int) -> None:
    # A base URL ending in /v1 is forgiven, as in the relay.
    channel = make_channel(type=channel_type, key=KEY, base_url=openai.base_url + "/v1/")

    assert balance.update_balance(channel.pk) == pytest.approx(95.0)

    subscription, usage = openai.requests
    assert subscription.path == "/v1/dashboard/billing/subscription"
    assert subscription.headers["authorization"] == f"Bearer {KEY}"
    today = timezone.localdate()
    assert usage.path == "/v1/dashboard/billing/usage"
    assert usage.query == {
        "start_date": today.replace(day=1).isoformat(),
        "end_date": today.isoformat(),
    }


def test_openai_usage_window_without_payment_method_is_100_days(openai: FakeOpenAI) -> None:
    openai.has_payment_method = False
    channel = make_channel(type=ChannelType.OPENAI, key=KEY, base_url=openai.base_url)

    balance.update_balance(channel.pk)

    start = timezone.localdate() - timedelta(days=100)
    assert openai.last_request.query["start_date"] == start.isoformat()


def test_custom_channel_without_base_url_fails(db: None) -> None:
    channel = make_channel(type=ChannelType.CUSTOM, base_url="")
    with pytest.raises(balance.BalanceError, match="Base URL"):
        balance.update_balance(channel.pk)


@pytest.mark.parametrize(
    ("channel_type", "expected"),
    [
        (ChannelType.OPENAI, "https://api.openai.com"),
        (ChannelType.CLOSEAI, "https://api.closeai-proxy.xyz"),
        (ChannelType.OPENAI_SB, "https://api.openai-sb.com"),
        (ChannelType.AIPROXY, "https://aiproxy.io"),
        (ChannelType.API2GPT, "https://api.api2gpt.com"),
        (ChannelType.AIGC2D, "https://api.aigc2d.com"),
        (ChannelType.SILICONFLOW, "https://api.siliconflow.cn"),
        (ChannelType.DEEPSEEK, "https://api.deepseek.com"),
        (ChannelType.OPENROUTER, "https://openrouter.ai/api"),
    ],
)
def test_without_base_url_one_apis_hosts_are_used(channel_type: int, expected: str) -> None:
    channel = make_channel(type=channel_type, base_url="")
    assert balance.balance_base(channel, balance.PROVIDERS[channel_type]) == expected


@pytest.mark.parametrize("channel_type", [ChannelType.AZURE, ChannelType.ANTHROPIC, 44 + 1])
def test_other_types_are_not_implemented(channel_type: int) -> None:
    channel = make_channel(type=channel_type, balance=1.5)
    with pytest.raises(balance.BalanceError, match="^尚未实现$"):
        balance.update_balance(channel.pk)
    assert stored(channel) == (1.5, 0)


def test_update_all_covers_enabled_supported_channels(
    providers: FakeBalanceProviders, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []
    monkeypatch.setattr(balance, "_pause", pauses.append)
    base = providers.base_url
    deepseek = make_channel(type=ChannelType.DEEPSEEK, key=KEY, base_url=base)
    openrouter = make_channel(type=ChannelType.OPENROUTER, key=KEY, base_url=base)
    failing = make_channel(type=ChannelType.CLOSEAI, key="sk-wrong", base_url=base)
    disabled = make_channel(
        type=ChannelType.DEEPSEEK,
        key=KEY,
        base_url=base,
        status=ChannelStatus.MANUALLY_DISABLED,
    )
    unsupported = make_channel(type=ChannelType.ANTHROPIC, key=KEY, base_url=base)

    with override_settings(POLLING_INTERVAL=2):
        summary = tasks.update_all_balances_task()

    assert summary == {"updated": 2, "failed": 1, "disabled": []}
    assert pauses == [2, 2]
    assert stored(deepseek)[0] == pytest.approx(110.5)
    assert stored(openrouter)[0] == pytest.approx(17.75)
    for untouched in (failing, disabled, unsupported):
        assert stored(untouched) == (0.0, 0)


def test_update_all_disables_empty_accounts_only_with_auto_disable(
    providers: FakeBalanceProviders,
) -> None:
    providers.openrouter_usage = providers.openrouter_credits
    channel = make_channel(type=ChannelType.OPENROUTER, key=KEY, base_url=providers.base_url)

    assert balance.update_all_balances().disabled == []
    channel.refresh_from_db()
    assert channel.status == ChannelStatus.ENABLED

    options.set_option("AutomaticDisableChannelEnabled", "true")
    assert balance.update_all_balances().disabled == [channel.pk]
    channel.refresh_from_db()
    assert channel.status == ChannelStatus.AUTO_DISABLED


@pytest.mark.parametrize("proxy_kind", ["http", "socks5"])
def test_balances_are_read_through_the_relay_proxy(
    providers: FakeBalanceProviders, proxy_kind: str
) -> None:
    channel = make_channel(type=ChannelType.OPENAI_SB, key=KEY, base_url=providers.base_url)
    with HttpProxy() as http_proxy, SocksProxy(username="ops", password="s3cret") as socks:
        url = http_proxy.url if proxy_kind == "http" else socks.url()
        with override_settings(RELAY_PROXY=url):
            assert balance.update_balance(channel.pk) > 0
        through = http_proxy.requests if proxy_kind == "http" else socks.connects
        assert len(through) == 1, through
