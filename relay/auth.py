"""API-key authentication for the relay, from process-local caches.

A key and its owner are read from the database once (the cold path) and then served from
memory; every write to a key or a user invalidates its entry in every process. The checks and
their messages and status codes are One API's (`middleware/auth.go`, `model/token.go`).
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from accounts.models import Role, UserStatus
from billing.models import ApiKey, KeyStatus
from oneapi import caching
from relay.errors import RelayError

if TYPE_CHECKING:
    from collections.abc import Sequence

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Unknown keys are remembered too (so a flood of bad keys costs no queries), up to a bound.
MAX_NEGATIVE_ENTRIES = 10_000


@dataclass(frozen=True)
class KeyInfo:
    id: int
    key: str
    user_id: int
    name: str
    status: int
    expired_time: int
    unlimited_quota: bool
    remain_quota: int
    models: frozenset[str] | None
    subnets: tuple[IpNetwork, ...] | None
    subnet_text: str
    # Requests / tokens per minute and requests in flight for this key; 0 = unlimited.
    rpm_limit: int = 0
    tpm_limit: int = 0
    concurrency_limit: int = 0


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    status: int
    role: int
    group: str
    quota: int

    @property
    def is_admin(self) -> bool:
        return self.role >= Role.ADMIN


@dataclass(frozen=True)
class Credentials:
    key: str
    forced_channel_id: str | None


def parse_authorization(header: str) -> Credentials:
    """`Bearer sk-KEY[-CHANNEL]`; `Bearer ` and `sk-` are optional, as in One API."""
    raw = header.removeprefix("Bearer ").strip().removeprefix("sk-")
    key, _, channel = raw.partition("-")
    return Credentials(key=key, forced_channel_id=channel.split("-", 1)[0] or None)


def parse_subnets(text: str) -> tuple[IpNetwork, ...] | None:
    networks = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            continue  # a malformed entry matches nothing, as in One API
    return tuple(networks) if text.strip() else None


def ip_allowed(client_ip: str, subnets: Sequence[IpNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in network for network in subnets)


_keys: dict[str, KeyInfo | None] = {}
_users: dict[int, UserInfo] = {}
_lock = threading.Lock()


def load_key(key: str) -> KeyInfo | None:
    """The cold path: one query for the key and its owner; fills both caches."""
    row = (
        ApiKey.objects.select_related("user")
        .filter(key=key)
        .only(
            "id",
            "key",
            "user_id",
            "name",
            "status",
            "expired_time",
            "unlimited_quota",
            "remain_quota",
            "models",
            "subnet",
            "rpm_limit",
            "tpm_limit",
            "concurrency_limit",
            "user__id",
            "user__username",
            "user__status",
            "user__role",
            "user__group",
            "user__quota",
        )
        .first()
    )
    with _lock:
        if row is None:
            if len(_keys) >= MAX_NEGATIVE_ENTRIES:
                for stale in [k for k, v in _keys.items() if v is None]:
                    del _keys[stale]
            _keys[key] = None
            return None
        models = frozenset(m.strip() for m in row.models.split(",") if m.strip())
        info = KeyInfo(
            id=row.pk,
            key=row.key,
            user_id=row.user_id,
            name=row.name,
            status=row.status,
            expired_time=row.expired_time,
            unlimited_quota=row.unlimited_quota,
            remain_quota=row.remain_quota,
            models=models or None,
            subnets=parse_subnets(row.subnet),
            subnet_text=row.subnet,
            rpm_limit=row.rpm_limit,
            tpm_limit=row.tpm_limit,
            concurrency_limit=row.concurrency_limit,
        )
        user = row.user
        _keys[key] = info
        _users[user.pk] = UserInfo(
            id=user.pk,
            username=user.username,
            status=user.status,
            role=user.role,
            group=user.group,
            quota=user.quota,
        )
        return info


def cached_key(key: str) -> tuple[bool, KeyInfo | None]:
    """(hit, info) without touching the database."""
    try:
        return True, _keys[key]
    except KeyError:
        return False, None


def cached_user(user_id: int) -> UserInfo | None:
    return _users.get(user_id)


@caching.on_invalidate(caching.KEY)
def _drop_key(ident: str) -> None:
    with _lock:
        if ident == "*":
            _keys.clear()
        else:
            _keys.pop(ident, None)


@caching.on_invalidate(caching.USER)
def _drop_user(ident: str) -> None:
    with _lock:
        if ident == "*":
            _users.clear()
            _keys.clear()
            return
        user_id = int(ident)
        _users.pop(user_id, None)
        # Keys carry nothing of the user but its id; dropping theirs forces a reload of both.
        for key, info in list(_keys.items()):
            if info is not None and info.user_id == user_id:
                del _keys[key]


def check_key(info: KeyInfo | None, key: str, now: int, remaining_quota: int) -> KeyInfo:
    """One API's token validation; every failure is a 401.

    `remaining_quota` is the key's live balance (it changes per request, so it is not part of
    the cached KeyInfo).
    """
    if not key:
        raise RelayError(401, "未提供令牌")
    if info is None:
        raise RelayError(401, "无效的令牌")
    if info.status == KeyStatus.EXHAUSTED:
        raise RelayError(401, f"令牌 {info.name}（#{info.id}）额度已用尽")
    if info.status == KeyStatus.EXPIRED:
        raise RelayError(401, "该令牌已过期")
    if info.status != KeyStatus.ENABLED:
        raise RelayError(401, "该令牌状态不可用")
    if info.expired_time != -1 and info.expired_time < now:
        raise RelayError(401, "该令牌已过期")
    if not info.unlimited_quota and remaining_quota <= 0:
        raise RelayError(401, "该令牌额度已用尽")
    return info


def check_access(
    info: KeyInfo,
    user: UserInfo,
    client_ip: str,
    forced_channel_id: str | None,
) -> None:
    """The checks after the key itself: subnet, owner status, admin-only channel suffix."""
    if info.subnets is not None and not ip_allowed(client_ip, info.subnets):
        raise RelayError(403, f"该令牌只能在指定网段使用：{info.subnet_text}，当前 ip：{client_ip}")
    if user.status != UserStatus.ENABLED:
        raise RelayError(403, "用户已被封禁")
    if forced_channel_id is not None and not user.is_admin:
        raise RelayError(403, "普通用户不支持指定渠道")


def check_model_allowed(info: KeyInfo, model: str) -> None:
    if info.models is not None and model not in info.models:
        raise RelayError(403, f"该令牌无权使用模型：{model}")
