"""User management behind `/api/user`, with the rules of One API's `controller/user.go`.

Every write goes through `_write`, which updates only the named columns (the relay's usage
write-back changes quota and used_quota concurrently, so a full-row save could undo charges)
and invalidates the user in every process's caches in the same transaction, so the relay
refuses a disabled or deleted user, or sees a new quota or group, at once.

Sessions of a disabled or deleted user need no sweep: `oneapi.api.ApiView` reads the user from
the database on every request, refuses any status but enabled and flushes that session.
A password change ends the user's other sessions through Django's session auth hash.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import Role, User, UserStatus
from accounts.registration import create_account
from billing.keys import new_access_token, new_aff_code
from billing.logs import format_quota, record_log
from billing.models import LogType
from channels_mgmt.selection import routing_table
from oneapi import caching
from oneapi.api import ApiError

USER_NOT_FOUND = "用户不存在"
USERNAME_TAKEN = "username: 用户名已被占用"
CANNOT_READ_PEER = "无权获取同级或更高等级用户的信息"
CANNOT_UPDATE_PEER = "无权更新同权限等级或更高权限等级的用户信息"
CANNOT_RAISE_ROLE = "无权将其他用户权限等级提升到大于等于自己的权限等级"
CANNOT_CREATE_PEER = "无法创建权限大于等于自己的用户"
CANNOT_DELETE_PEER = "无权删除同权限等级或更高权限等级的用户"
CANNOT_DELETE_SELF_ROOT = "不能删除超级管理员账户"
CANNOT_DISABLE_ROOT = "无法禁用超级管理员用户"
CANNOT_DELETE_ROOT = "无法删除超级管理员用户"
ONLY_ROOT_PROMOTES = "普通管理员用户无法提升其他用户为管理员"
ALREADY_ADMIN = "该用户已经是管理员"
CANNOT_DEMOTE_ROOT = "无法降级超级管理员用户"
ALREADY_COMMON = "该用户已经是普通用户"
TOKEN_COLLISION = "请重试，系统生成的 UUID 竟然重复了！"
QUOTA_CHANGED = "用户额度正在变化，请重试"

# What One API shows of a user (`GetUserById(id, false)`): everything but secrets.
PUBLIC_FIELDS = (
    "id",
    "username",
    "display_name",
    "role",
    "status",
    "email",
    "github_id",
    "wechat_id",
    "lark_id",
    "oidc_id",
    "quota",
    "used_quota",
    "request_count",
    "group",
    "aff_code",
    "inviter_id",
)
MAX_ID = 2**63 - 1  # larger numbers match no row, and some databases reject them in a query
LIST_ORDERS = {"quota": "-quota", "used_quota": "-used_quota", "request_count": "-request_count"}


def public_user(user: User) -> dict[str, Any]:
    data = {name: getattr(user, name) for name in PUBLIC_FIELDS}
    data["aff_code"] = user.aff_code or ""
    return data


def _public_users() -> Any:
    return User.objects.only(*PUBLIC_FIELDS)


def outranks(actor: User, target: User) -> bool:
    """Whether `actor` may read or change `target`: a higher role, or root (One API)."""
    return actor.role > target.role or actor.role == Role.ROOT


def _write(user: User, fields: list[str]) -> None:
    """Save only `fields` and invalidate the user's cached state; call inside a transaction."""
    if fields:
        try:
            with transaction.atomic():
                user.save(update_fields=fields)
        except IntegrityError:
            # The only unique column a caller can choose is the username (raced past the check).
            raise ApiError(USERNAME_TAKEN) from None
        caching.invalidate(caching.USER, user.pk)


def _locked(*conditions: Q, **lookup: Any) -> User:
    user = User.objects.select_for_update().filter(*conditions, **lookup).first()
    if user is None:
        raise ApiError(USER_NOT_FOUND)
    return user


def _apply_profile(
    user: User, username: str | None, display_name: str | None, password: str | None
) -> list[str]:
    """Set the fields both the user and an admin may edit; returns the changed columns.
    A blank username or password means unchanged, as in One API."""
    fields = []
    if username and username != user.username:
        if User.objects.filter(username=username).exclude(pk=user.pk).exists():
            raise ApiError(USERNAME_TAKEN)
        user.username = username
        fields.append("username")
    if display_name is not None and display_name != user.display_name:
        user.display_name = display_name
        fields.append("display_name")
    if password:
        user.set_password(password)
        fields.append("password")
    return fields


def _soft_delete(user: User) -> None:
    """One API's `User.Delete`: status deleted, username freed as `deleted_<uuid>`."""
    max_length = User._meta.get_field("username").max_length
    user.username = f"deleted_{uuid.uuid4().hex}"[:max_length]
    user.status = UserStatus.DELETED
    _write(user, ["username", "status"])


# --- the caller's own account ------------------------------------------------------------


@transaction.atomic
def update_self(
    user_id: int,
    *,
    username: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
) -> User:
    user = _locked(pk=user_id)
    _write(user, _apply_profile(user, username, display_name, password))
    return user


@transaction.atomic
def delete_self(user_id: int) -> None:
    user = _locked(pk=user_id)
    if user.role == Role.ROOT:
        raise ApiError(CANNOT_DELETE_SELF_ROOT)
    _soft_delete(user)


def regenerate_access_token(user_id: int) -> str:
    """A new system access token; the old one stops working at once."""
    for _ in range(3):
        token = new_access_token()
        try:
            with transaction.atomic():
                if not User.objects.filter(pk=user_id).update(access_token=token):
                    raise ApiError(USER_NOT_FOUND)
                caching.invalidate(caching.USER, user_id)
        except IntegrityError:
            continue
        return token
    raise ApiError(TOKEN_COLLISION)


def affiliate_code(user_id: int) -> str:
    """The user's invitation code, created on first request (4 characters, unique)."""
    for _ in range(20):
        current = User.objects.filter(pk=user_id).values_list("aff_code", flat=True).first()
        if current:
            return current
        code = new_aff_code()
        try:
            with transaction.atomic():
                empty = Q(aff_code__isnull=True) | Q(aff_code="")
                if User.objects.filter(empty, pk=user_id).update(aff_code=code):
                    caching.invalidate(caching.USER, user_id)
                elif not User.objects.filter(pk=user_id).exists():
                    raise ApiError(USER_NOT_FOUND)
        except IntegrityError:
            continue  # taken by someone else; the loop re-reads and tries another
    raise ApiError("无法生成邀请码，请重试")


def available_models(user: User) -> list[str]:
    return routing_table().models_for_group(user.group)


# --- administration ----------------------------------------------------------------------


def list_users(offset: int, limit: int, order: str = "") -> list[dict[str, Any]]:
    ordering = LIST_ORDERS.get(order)
    users = _public_users().exclude(status=UserStatus.DELETED)
    # id as the tie-breaker keeps pages stable when many users share a quota.
    users = users.order_by(ordering, "-id") if ordering else users.order_by("-id")
    return [public_user(u) for u in users[offset : offset + limit]]


def search_users(keyword: str) -> list[dict[str, Any]]:
    """Id exact, or a username, email or display-name prefix (deleted users included, as
    in One API, so an admin can still find an account by its email)."""
    condition = (
        Q(username__istartswith=keyword)
        | Q(email__istartswith=keyword)
        | Q(display_name__istartswith=keyword)
    )
    if keyword.isdecimal() and int(keyword) <= MAX_ID:
        condition |= Q(pk=int(keyword))
    return [public_user(u) for u in _public_users().filter(condition).order_by("-id")]


def get_user(actor: User, user_id: int) -> dict[str, Any]:
    user = _public_users().filter(pk=user_id).first()
    if user is None:
        raise ApiError(USER_NOT_FOUND)
    if not outranks(actor, user):
        raise ApiError(CANNOT_READ_PEER)
    return public_user(user)


def create_user(
    actor: User,
    *,
    username: str,
    password: str,
    display_name: str | None = None,
    role: int | None = None,
) -> User:
    """A common user made by an admin (the requested role is only checked, as in One API)."""
    if role is not None and role >= actor.role:
        raise ApiError(CANNOT_CREATE_PEER)
    if User.objects.filter(username=username).exists():
        raise ApiError(USERNAME_TAKEN)
    try:
        return create_account(username, password, display_name=display_name or username)
    except IntegrityError:
        raise ApiError(USERNAME_TAKEN) from None


def _check_role_change(actor: User, target: User, role: int | None) -> bool:
    """Whether `role` is a change to write. Only root changes roles, and never a root's
    (an admin's request is checked like One API's, then ignored)."""
    if role is None:
        return False
    if actor.role != Role.ROOT:
        if role >= actor.role:
            raise ApiError(CANNOT_RAISE_ROLE)
        return False
    if role == target.role:
        return False
    if target.role == Role.ROOT:
        raise ApiError(CANNOT_DEMOTE_ROOT)
    if role == Role.ROOT:
        raise ApiError(CANNOT_RAISE_ROLE)
    return True


@transaction.atomic
def update_user(
    actor: User,
    user_id: int,
    *,
    username: str | None = None,
    display_name: str | None = None,
    password: str | None = None,
    group: str | None = None,
    quota: int | None = None,
    role: int | None = None,
) -> User:
    """An admin's edit of another user (One API's `UpdateUser`)."""
    user = _locked(pk=user_id)
    if not outranks(actor, user):
        raise ApiError(CANNOT_UPDATE_PEER)
    fields = []
    if _check_role_change(actor, user, role):
        user.role = role
        fields.append("role")
    fields += _apply_profile(user, username, display_name, password)
    if group and group != user.group:
        user.group = group
        fields.append("group")
    _write(user, fields)
    if quota is not None and quota != user.quota:
        _set_quota(user, quota)
    return user


def _set_quota(user: User, quota: int) -> None:
    """Set an absolute quota with a statement conditional on the value read under the row
    lock, so the logged "from X" is exactly what was replaced; a concurrent change (possible
    where the database ignores the lock) fails the request instead of being lost."""
    old = user.quota
    if not User.objects.filter(pk=user.pk, quota=old).update(quota=quota):
        raise ApiError(QUOTA_CHANGED)
    user.quota = quota
    record_log(
        user.pk,
        LogType.MANAGE,
        f"管理员将用户额度从 {format_quota(old)}修改为 {format_quota(quota)}",
        username=user.username,
    )
    caching.invalidate(caching.USER, user.pk)


@transaction.atomic
def manage_user(actor: User, username: str, action: str) -> dict[str, int]:
    """One API's `ManageUser`; returns the user's new `{role, status}`. Deleted users are
    not found: deletion is final here (One API would let `enable` revive them)."""
    user = _locked(~Q(status=UserStatus.DELETED), username=username)
    if not outranks(actor, user):
        raise ApiError(CANNOT_UPDATE_PEER)
    if action == "disable":
        if user.role == Role.ROOT:
            raise ApiError(CANNOT_DISABLE_ROOT)
        user.status = UserStatus.DISABLED
        _write(user, ["status"])
    elif action == "enable":
        user.status = UserStatus.ENABLED
        _write(user, ["status"])
    elif action == "delete":
        if user.role == Role.ROOT:
            raise ApiError(CANNOT_DELETE_ROOT)
        _soft_delete(user)
    elif action == "promote":
        if actor.role != Role.ROOT:
            raise ApiError(ONLY_ROOT_PROMOTES)
        if user.role >= Role.ADMIN:
            raise ApiError(ALREADY_ADMIN)
        user.role = Role.ADMIN
        _write(user, ["role"])
    elif action == "demote":
        if user.role == Role.ROOT:
            raise ApiError(CANNOT_DEMOTE_ROOT)
        if user.role == Role.COMMON:
            raise ApiError(ALREADY_COMMON)
        user.role = Role.COMMON
        _write(user, ["role"])
    else:
        raise ApiError(f"action: 无效的操作 {action}")
    return {"role": user.role, "status": user.status}


@transaction.atomic
def delete_user(actor: User, user_id: int) -> None:
    """Soft delete by an admin: strictly lower roles only (root cannot delete root either)."""
    user = _locked(pk=user_id)
    if actor.role <= user.role:
        raise ApiError(CANNOT_DELETE_PEER)
    if user.status != UserStatus.DELETED:
        _soft_delete(user)
