"""Logins, registration, email codes, password reset and external identities, with the rules
and messages of One API's `controller/user.go`, `controller/misc.go` and `controller/auth/`.

Email codes live in the Django cache (Redis when configured) so that every node accepts a code
another node sent; One API keeps them in process memory. Codes are single-use.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import login
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.http import HttpRequest

from accounts import email as mail
from accounts.models import User, UserStatus
from accounts.oauth import ExternalProvider, Identity, remember_social_account, server_address
from accounts.registration import create_account
from oneapi import caching, options
from oneapi.api import ApiError

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
INVALID_PARAMS = "无效的参数"
PASSWORD_LOGIN_DISABLED = "管理员关闭了密码登录"
WRONG_CREDENTIALS = "用户名或密码错误，或用户已被封禁"
REGISTER_DISABLED = "管理员关闭了新用户注册"
PASSWORD_REGISTER_DISABLED = "管理员关闭了通过密码进行注册，请使用第三方账户验证的形式进行注册"
EMAIL_VERIFICATION_REQUIRED = "管理员开启了邮箱验证，请输入邮箱地址和验证码"
WRONG_CODE = "验证码错误或已过期"
USERNAME_TAKEN = "用户名已被占用"
DOMAIN_NOT_ALLOWED = "管理员启用了邮箱域名白名单，您的邮箱地址的域名不在白名单中"
EMAIL_TAKEN = "邮箱地址已被占用"
EMAIL_NOT_REGISTERED = "该邮箱地址未注册"
BAD_RESET_LINK = "重置链接非法或已过期"
USER_BANNED = "用户已被封禁"
STATE_MISMATCH = "state is empty or not same"
GITHUB_DISABLED = "管理员未开启通过 GitHub 登录以及注册"
WECHAT_DISABLED = "管理员未开启通过微信登录以及注册"

EMAIL_VERIFICATION = "email_verification"
PASSWORD_RESET = "password_reset"
CODE_TTL_SECONDS = mail.CODE_VALID_MINUTES * 60
OAUTH_STATE_KEY = "oauth_state"
_ALPHANUMERIC = string.ascii_letters + string.digits


def random_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def _same(a: str, b: str) -> bool:
    # Bytes: compare_digest refuses non-ASCII str, and callers may send anything.
    return secrets.compare_digest(a.encode(), b.encode())


# --- sessions ------------------------------------------------------------------------------


def session_user(request: HttpRequest) -> User | None:
    """The user of the browser session (not of an access token), as One API's `session`."""
    user = getattr(request, "user", None)
    return user if isinstance(user, User) and user.is_authenticated else None


def start_session(request: HttpRequest, user: User) -> dict[str, Any]:
    """Log `user` in on this session; returns what One API's `SetupLogin` answers."""
    login(request, user, backend=MODEL_BACKEND)
    return {
        "id": user.pk,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "status": user.status,
    }


def authenticate_password(username: str, password: str) -> User:
    """By username or email; a disabled user gets the same answer as a wrong password."""
    if not options.get_bool("PasswordLoginEnabled"):
        raise ApiError(PASSWORD_LOGIN_DISABLED)
    if not username or not password:
        raise ApiError(INVALID_PARAMS)
    candidates = sorted(
        User.objects.filter(Q(username=username) | Q(email=username)),
        key=lambda u: u.username != username,  # an exact username match first
    )
    if not candidates:
        make_password(password)  # the work of a real check: no user-existence timing
    for user in candidates:
        if user.check_password(password) and user.status == UserStatus.ENABLED:
            return user
    raise ApiError(WRONG_CREDENTIALS)


# --- email codes ---------------------------------------------------------------------------


def _code_key(purpose: str, email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
    return f"auth:code:{purpose}:{digest}"


def remember_code(purpose: str, email: str, code: str) -> None:
    cache.set(_code_key(purpose, email), code, CODE_TTL_SECONDS)


def use_code(purpose: str, email: str, code: str) -> bool:
    """Whether `code` is the live code for `email`, consuming it. The delete decides between
    concurrent uses: only one caller removes the key."""
    if not email or not code:
        return False
    key = _code_key(purpose, email)
    stored = cache.get(key)
    if not isinstance(stored, str) or not _same(stored, code.strip()):
        return False
    return bool(cache.delete(key))


def _checked_email(email: str) -> str:
    email = email.strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ApiError(INVALID_PARAMS) from None
    return email


def _send(message: Any) -> None:
    try:
        mail.send(message)
    except mail.SendFailed as failure:
        raise ApiError(failure.message) from None


def send_verification_code(email: str) -> None:
    """`GET /api/verification`: a 6-character code, valid 10 minutes."""
    email = _checked_email(email)
    if options.get_bool("EmailDomainRestrictionEnabled"):
        domains = [d.strip().lower() for d in options.get_str("EmailDomainWhitelist").split(",")]
        if not any(d and email.lower().endswith("@" + d) for d in domains):
            raise ApiError(DOMAIN_NOT_ALLOWED)
    if User.objects.filter(email__iexact=email).exists():
        raise ApiError(EMAIL_TAKEN)
    code = secrets.token_hex(3)
    remember_code(EMAIL_VERIFICATION, email, code)
    _send(mail.verification_message(email, code))


def send_password_reset(email: str) -> None:
    """`GET /api/reset_password`: mails `{ServerAddress}/user/reset?email=&token=`."""
    email = _checked_email(email)
    if not User.objects.filter(email__iexact=email).exists():
        raise ApiError(EMAIL_NOT_REGISTERED)
    token = secrets.token_hex(16)
    remember_code(PASSWORD_RESET, email, token)
    link = f"{server_address()}/user/reset?{urlencode({'email': email, 'token': token})}"
    _send(mail.password_reset_message(email, link))


@transaction.atomic
def reset_password(email: str, token: str) -> str:
    """`POST /api/user/reset`: a random 12-character password for the email's accounts."""
    if not email or not token:
        raise ApiError(INVALID_PARAMS)
    if not use_code(PASSWORD_RESET, email, token):
        raise ApiError(BAD_RESET_LINK)
    password = random_string(12)
    users = list(User.objects.select_for_update().filter(email__iexact=email.strip()))
    if not users:
        raise ApiError(EMAIL_NOT_REGISTERED)
    for user in users:
        user.set_password(password)
        user.save(update_fields=["password"])
        caching.invalidate(caching.USER, user.pk)
    return password


# --- registration --------------------------------------------------------------------------


def check_registration_open() -> None:
    if not options.get_bool("RegisterEnabled"):
        raise ApiError(REGISTER_DISABLED)
    if not options.get_bool("PasswordRegisterEnabled"):
        raise ApiError(PASSWORD_REGISTER_DISABLED)


def register(
    username: str, password: str, email: str = "", code: str = "", aff_code: str = ""
) -> User:
    """`POST /api/user/register`, after the toggles and input checks."""
    verify_email = options.get_bool("EmailVerificationEnabled")
    if verify_email and (not email or not code):
        raise ApiError(EMAIL_VERIFICATION_REQUIRED)
    if User.objects.filter(username=username).exists():
        raise ApiError(USERNAME_TAKEN)
    # Checked last so that a refused request does not burn the code.
    if verify_email and not use_code(EMAIL_VERIFICATION, email, code):
        raise ApiError(WRONG_CODE)
    inviter = None
    if aff_code:
        inviter = User.objects.filter(aff_code=aff_code).values_list("pk", flat=True).first()
    try:
        return create_account(
            username,
            password,
            inviter_id=inviter or 0,
            display_name=username,
            email=email.strip() if verify_email else "",
        )
    except IntegrityError:
        raise ApiError(USERNAME_TAKEN) from None


# --- OAuth state and external identities ----------------------------------------------------


def new_oauth_state(request: HttpRequest) -> str:
    state = random_string(12)
    request.session[OAUTH_STATE_KEY] = state
    return state


def check_oauth_state(request: HttpRequest) -> None:
    """403 unless `?state=` equals the session's state, as One API. The state stays: One API's
    callback page retries with the same state after a failure."""
    state = request.GET.get("state", "")
    expected = request.session.get(OAUTH_STATE_KEY)
    if not state or not isinstance(expected, str) or not _same(state, expected):
        raise ApiError(STATE_MISMATCH, status=403)


def check_github_enabled() -> None:
    if not options.get_bool("GitHubOAuthEnabled"):
        raise ApiError(GITHUB_DISABLED)


def check_wechat_enabled() -> None:
    if not options.get_bool("WeChatAuthEnabled"):
        raise ApiError(WECHAT_DISABLED)


def new_external_account(
    provider: ExternalProvider, uid: str, display_name: str = "", email: str = ""
) -> User:
    """An account for a new outside identity, named `<prefix>_<max id + 1>` as One API."""
    if not options.get_bool("RegisterEnabled"):
        raise ApiError(REGISTER_DISABLED)
    next_id = (User.objects.aggregate(top=Max("id"))["top"] or 0) + 1
    for attempt in range(5):
        try:
            return create_account(
                f"{provider.username_prefix}_{next_id + attempt}",
                None,
                display_name=display_name or provider.default_display_name,
                email=email,
                **{provider.field: uid},
            )
        except IntegrityError:
            continue  # a concurrent sign-up took the name
    raise ApiError("请重试，系统生成的用户名已被占用")


def external_user(
    provider: ExternalProvider, uid: str, display_name: str = "", email: str = ""
) -> User:
    """The account holding this identity, created when there is none (RegisterEnabled)."""
    user = User.objects.filter(**{provider.field: uid}).order_by("pk").first()
    if user is None:
        user = new_external_account(provider, uid, display_name, email)
    if user.status != UserStatus.ENABLED:
        raise ApiError(USER_BANNED)
    return user


@transaction.atomic
def bind_external(user: User, provider: ExternalProvider, uid: str) -> None:
    if User.objects.filter(**{provider.field: uid}).exists():
        raise ApiError(provider.already_bound)
    User.objects.filter(pk=user.pk).update(**{provider.field: uid})
    setattr(user, provider.field, uid)
    caching.invalidate(caching.USER, user.pk)


def oauth_sign_in(request: HttpRequest, identity: Identity) -> dict[str, Any] | None:
    """Bind to the session's user when logged in (returns None), else log in or register
    and return the login answer."""
    current = session_user(request)
    if current is not None:
        bind_external(current, identity.provider, identity.uid)
        remember_social_account(current, identity)
        return None
    user = external_user(identity.provider, identity.uid, identity.display_name, identity.email)
    remember_social_account(user, identity)
    return start_session(request, user)


@transaction.atomic
def bind_email(user: User, email: str, code: str) -> None:
    """`GET /api/oauth/email/bind`: the email must carry a live verification code."""
    if not use_code(EMAIL_VERIFICATION, email, code):
        raise ApiError(WRONG_CODE)
    email = email.strip()
    User.objects.filter(pk=user.pk).update(email=email)
    user.email = email
    caching.invalidate(caching.USER, user.pk)
