from __future__ import annotations

import pytest

from accounts.models import Role, UserStatus
from billing.models import ApiKey, KeyStatus
from oneapi import caching
from relay import auth
from relay.errors import RelayError, error_body
from tests.factories import make_user

NOW = 1_800_000_000
KEY = "a" * 48


def make_key(user, **fields) -> ApiKey:
    defaults = {"key": KEY, "name": "my key", "remain_quota": 1000, "created_time": NOW}
    return ApiKey.objects.create(user=user, **{**defaults, **fields})


@pytest.mark.parametrize(
    ("header", "key", "channel"),
    [
        (f"Bearer sk-{KEY}", KEY, None),
        (f"sk-{KEY}", KEY, None),
        (KEY, KEY, None),
        (f"Bearer sk-{KEY}-12", KEY, "12"),
        ("", "", None),
        ("Bearer ", "", None),
    ],
)
def test_parse_authorization(header: str, key: str, channel: str | None) -> None:
    assert auth.parse_authorization(header) == auth.Credentials(key, channel)


def test_subnets_match_ipv4_and_ipv6_and_ignore_bad_entries() -> None:
    subnets = auth.parse_subnets("10.0.0.0/8, 2001:db8::/32, nonsense")

    assert auth.ip_allowed("10.1.2.3", subnets) is True
    assert auth.ip_allowed("2001:db8::1", subnets) is True
    assert auth.ip_allowed("192.168.1.1", subnets) is False
    assert auth.ip_allowed("not-an-ip", subnets) is False
    assert auth.parse_subnets("") is None


@pytest.mark.django_db
class TestCheckKey:
    def load(self, **fields) -> auth.KeyInfo:
        make_key(make_user(), **fields)
        info = auth.load_key(KEY)
        assert info is not None
        return info

    def test_accepts_a_valid_key(self) -> None:
        info = self.load()
        assert auth.check_key(info, KEY, NOW, remaining_quota=1000) is info

    @pytest.mark.parametrize(
        ("fields", "remaining", "message"),
        [
            ({"status": KeyStatus.EXHAUSTED}, 1000, "令牌 my key（#{id}）额度已用尽"),
            ({"status": KeyStatus.EXPIRED}, 1000, "该令牌已过期"),
            ({"status": KeyStatus.DISABLED}, 1000, "该令牌状态不可用"),
            ({"expired_time": NOW - 1}, 1000, "该令牌已过期"),
            ({}, 0, "该令牌额度已用尽"),
        ],
    )
    def test_rejects_with_one_api_messages(self, fields, remaining, message) -> None:
        info = self.load(**fields)
        with pytest.raises(RelayError) as error:
            auth.check_key(info, KEY, NOW, remaining_quota=remaining)
        assert error.value.status == 401
        assert error.value.message == message.format(id=info.id)

    def test_unlimited_key_ignores_its_balance(self) -> None:
        info = self.load(unlimited_quota=True, remain_quota=0)
        assert auth.check_key(info, KEY, NOW, remaining_quota=0) is info

    def test_missing_and_unknown_keys(self) -> None:
        with pytest.raises(RelayError, match="未提供令牌"):
            auth.check_key(None, "", NOW, remaining_quota=0)
        with pytest.raises(RelayError, match="无效的令牌"):
            auth.check_key(None, "b" * 48, NOW, remaining_quota=0)


@pytest.mark.django_db
def test_access_checks_subnet_user_status_and_forced_channel() -> None:
    owner = make_user()
    make_key(owner, subnet="10.0.0.0/8")
    info = auth.load_key(KEY)
    user = auth.cached_user(owner.pk)
    assert info is not None and user is not None

    auth.check_access(info, user, "10.0.0.1", None)
    with pytest.raises(RelayError) as error:
        auth.check_access(info, user, "8.8.8.8", None)
    assert (error.value.status, error.value.message) == (
        403,
        "该令牌只能在指定网段使用：10.0.0.0/8，当前 ip：8.8.8.8",
    )
    with pytest.raises(RelayError, match="普通用户不支持指定渠道"):
        auth.check_access(info, user, "10.0.0.1", "3")
    admin_view = auth.UserInfo(**{**user.__dict__, "role": Role.ADMIN})
    auth.check_access(info, admin_view, "10.0.0.1", "3")
    banned = auth.UserInfo(**{**user.__dict__, "status": UserStatus.DISABLED})
    with pytest.raises(RelayError, match="用户已被封禁"):
        auth.check_access(info, banned, "10.0.0.1", None)


@pytest.mark.django_db
def test_model_whitelist() -> None:
    make_key(make_user(), models="gpt-4, gpt-4o")
    info = auth.load_key(KEY)
    assert info is not None

    auth.check_model_allowed(info, "gpt-4o")
    with pytest.raises(RelayError) as error:
        auth.check_model_allowed(info, "gpt-3.5-turbo")
    assert (error.value.status, error.value.message) == (403, "该令牌无权使用模型：gpt-3.5-turbo")


@pytest.mark.django_db
def test_warm_lookups_do_not_query_and_writes_invalidate(django_assert_num_queries) -> None:
    owner = make_user()
    make_key(owner)
    with django_assert_num_queries(1):
        auth.load_key(KEY)
    with django_assert_num_queries(0):
        assert auth.cached_key(KEY)[0] is True
        assert auth.cached_user(owner.pk) is not None

    caching.invalidate(caching.USER, owner.pk)

    assert auth.cached_key(KEY) == (False, None)
    assert auth.cached_user(owner.pk) is None


@pytest.mark.django_db
def test_unknown_keys_are_remembered_until_a_key_is_written(django_assert_num_queries) -> None:
    assert auth.load_key(KEY) is None
    with django_assert_num_queries(0):
        assert auth.cached_key(KEY) == (True, None)

    make_key(make_user())
    caching.invalidate(caching.KEY, KEY)

    assert auth.cached_key(KEY) == (False, None)
    assert auth.load_key(KEY) is not None


def test_error_body_has_one_api_shape() -> None:
    error = RelayError(403, "该令牌无权使用模型：x")

    assert error_body(error, "2026112312000012345678") == {
        "error": {
            "message": "该令牌无权使用模型：x (request id: 2026112312000012345678)",
            "type": "one_api_error",
            "param": "",
            "code": "",
        }
    }
