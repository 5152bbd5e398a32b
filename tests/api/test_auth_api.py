"""Password login, registration, email codes, password reset, Turnstile, WeChat and email
binding through the `/api` routes, with One API's toggles and messages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import auth_services
from accounts.models import User, UserStatus
from billing.models import ApiKey
from oneapi import options
from oneapi.api import NOT_LOGGED_IN
from tests.api.conftest import Actors
from tests.factories import make_user
from tests.fakes.oauth_servers import FakeTurnstile, FakeWeChatServer

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_cache() -> None:
    cache.clear()  # rate-limit counters and email codes of earlier tests


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def login(client: APIClient, username: str, password: str) -> dict:
    return client.post(
        "/api/user/login", {"username": username, "password": password}, format="json"
    ).json()


def register(client: APIClient, **fields: str) -> dict:
    body = {"username": "newbie", "password": "password123", **fields}
    return client.post("/api/user/register", body, format="json").json()


def last_code() -> str:
    match = re.search(r"您的验证码为: (\w+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    return match.group(1)


# --- login and logout ----------------------------------------------------------------------


def test_login_by_username_sets_the_session_cookie(client: APIClient) -> None:
    user = make_user(username="alice", display_name="Alice", password="s3cret-pass")
    assert client.get("/api/models").status_code == 401

    body = login(client, "alice", "s3cret-pass")

    assert body == {
        "success": True,
        "message": "",
        "data": {
            "id": user.pk,
            "username": "alice",
            "display_name": "Alice",
            "role": 1,
            "status": 1,
        },
    }
    assert "session" in client.cookies
    # The cookie alone authenticates later /api calls.
    response = client.get("/api/models")
    assert response.status_code == 200
    assert response.json()["success"] is True


def test_login_by_email(client: APIClient) -> None:
    make_user(username="alice", email="alice@example.com", password="s3cret-pass")
    body = login(client, "alice@example.com", "s3cret-pass")
    assert body["success"] is True
    assert body["data"]["username"] == "alice"


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong-password"), ("nobody", "s3cret-pass"), ("banned", "s3cret-pass")],
)
def test_login_refusals_share_one_message(client: APIClient, username: str, password: str) -> None:
    make_user(username="alice", password="s3cret-pass")
    make_user(username="banned", password="s3cret-pass", status=UserStatus.DISABLED)
    body = login(client, username, password)
    assert body == {"success": False, "message": auth_services.WRONG_CREDENTIALS}
    assert client.get("/api/models").status_code == 401


def test_login_needs_username_and_password(client: APIClient) -> None:
    assert login(client, "", "x")["message"] == auth_services.INVALID_PARAMS
    response = client.post("/api/user/login", "{not json", content_type="application/json")
    assert response.json() == {"success": False, "message": auth_services.INVALID_PARAMS}


def test_password_login_can_be_switched_off(client: APIClient) -> None:
    make_user(username="alice", password="s3cret-pass")
    options.set_option("PasswordLoginEnabled", "false")
    body = login(client, "alice", "s3cret-pass")
    assert body == {"success": False, "message": "管理员关闭了密码登录"}


def test_logout_ends_the_session(client: APIClient) -> None:
    make_user(username="alice", password="s3cret-pass")
    login(client, "alice", "s3cret-pass")
    assert client.get("/api/user/logout").json() == {"success": True, "message": ""}
    response = client.get("/api/models")
    assert response.status_code == 401
    assert response.json()["message"] == NOT_LOGGED_IN


def test_login_is_rate_limited_as_a_critical_route(client: APIClient) -> None:
    for _ in range(20):
        assert login(client, "nobody", "password")["success"] is False
    response = client.post(
        "/api/user/login", {"username": "nobody", "password": "x"}, format="json"
    )
    assert response.status_code == 429


# --- registration --------------------------------------------------------------------------


def test_register_creates_an_account_that_can_log_in(client: APIClient) -> None:
    options.set_option("QuotaForNewUser", "1000")
    assert register(client, email="ignored@example.com") == {"success": True, "message": ""}

    user = User.objects.get(username="newbie")
    assert user.display_name == "newbie"
    assert user.quota == 1000
    assert user.email == ""  # stored only when email verification is on, as One API
    assert ApiKey.objects.filter(user=user, name="default").exists()
    assert login(client, "newbie", "password123")["success"] is True


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("RegisterEnabled", "管理员关闭了新用户注册"),
        (
            "PasswordRegisterEnabled",
            "管理员关闭了通过密码进行注册，请使用第三方账户验证的形式进行注册",
        ),
    ],
)
def test_register_toggles(client: APIClient, key: str, message: str) -> None:
    options.set_option(key, "false")
    assert register(client) == {"success": False, "message": message}
    assert not User.objects.filter(username="newbie").exists()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"username": "a-name-over-12"}, "username"),
        ({"username": ""}, "username"),
        ({"password": "short"}, "password"),
        ({"password": "p" * 21}, "password"),
    ],
)
def test_register_validates_input(client: APIClient, fields: dict, field: str) -> None:
    body = register(client, **fields)
    assert body["success"] is False
    assert body["message"].startswith(f"{field}: ")
    assert User.objects.count() == 0


def test_register_refuses_a_taken_username(client: APIClient) -> None:
    make_user(username="newbie")
    assert register(client) == {"success": False, "message": auth_services.USERNAME_TAKEN}


def test_register_with_an_invitation_code_rewards_both(client: APIClient) -> None:
    options.set_option("QuotaForInviter", "300")
    options.set_option("QuotaForInvitee", "200")
    inviter = make_user(username="inviter", aff_code="AbCd", quota=0)

    assert register(client, aff_code="AbCd")["success"] is True

    invitee = User.objects.get(username="newbie")
    assert invitee.inviter_id == inviter.pk
    assert invitee.quota == 200
    inviter.refresh_from_db()
    assert inviter.quota == 300


def test_unknown_invitation_code_is_ignored(client: APIClient) -> None:
    assert register(client, aff_code="nope")["success"] is True
    assert User.objects.get(username="newbie").inviter_id == 0


def test_register_with_email_verification(client: APIClient) -> None:
    options.set_option("EmailVerificationEnabled", "true")
    required = auth_services.EMAIL_VERIFICATION_REQUIRED
    assert register(client)["message"] == required
    assert register(client, email="n@example.com")["message"] == required

    assert client.get("/api/verification", {"email": "n@example.com"}).json()["success"]
    code = last_code()
    wrong = register(client, email="n@example.com", verification_code="zzzzzz")
    assert wrong == {"success": False, "message": "验证码错误或已过期"}
    other_email = register(client, email="x@example.com", verification_code=code)
    assert other_email["message"] == "验证码错误或已过期"

    assert register(client, email="n@example.com", verification_code=code)["success"] is True
    assert User.objects.get(username="newbie").email == "n@example.com"
    # Codes are single-use.
    again = register(client, username="second", email="n@example.com", verification_code=code)
    assert again["message"] == "验证码错误或已过期"


def test_a_refused_registration_does_not_burn_the_code(client: APIClient) -> None:
    options.set_option("EmailVerificationEnabled", "true")
    make_user(username="taken")
    client.get("/api/verification", {"email": "n@example.com"})
    code = last_code()
    refused = register(client, username="taken", email="n@example.com", verification_code=code)
    assert refused["message"] == auth_services.USERNAME_TAKEN
    assert register(client, email="n@example.com", verification_code=code)["success"] is True


# --- verification codes --------------------------------------------------------------------


def test_verification_mails_a_six_character_code(client: APIClient) -> None:
    options.set_option("SystemName", "Gateway")
    options.set_option("SMTPFrom", "noreply@gateway.test")
    body = client.get("/api/verification", {"email": "n@example.com"}).json()

    assert body == {"success": True, "message": ""}
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["n@example.com"]
    assert message.from_email == "noreply@gateway.test"
    assert message.subject == "Gateway邮箱验证邮件"
    assert len(last_code()) == 6
    html = message.alternatives[0][0]
    assert last_code() in html and "10 分钟内有效" in html


def test_verification_codes_live_in_the_shared_cache(client: APIClient) -> None:
    client.get("/api/verification", {"email": "n@example.com"})
    key = auth_services._code_key(auth_services.EMAIL_VERIFICATION, "N@Example.com")
    assert cache.get(key) == last_code()


@pytest.mark.parametrize("email", ["", "not-an-email", "a@b"])
def test_verification_rejects_bad_addresses(client: APIClient, email: str) -> None:
    body = client.get("/api/verification", {"email": email}).json()
    assert body == {"success": False, "message": "无效的参数"}
    assert mail.outbox == []


def test_verification_domain_whitelist(client: APIClient) -> None:
    options.set_option("EmailDomainRestrictionEnabled", "true")
    options.set_option("EmailDomainWhitelist", "gmail.com,qq.com")
    refused = client.get("/api/verification", {"email": "n@example.com"}).json()
    assert refused == {
        "success": False,
        "message": "管理员启用了邮箱域名白名单，您的邮箱地址的域名不在白名单中",
    }
    assert client.get("/api/verification", {"email": "n@QQ.com"}).json()["success"] is True


def test_verification_refuses_a_taken_email(client: APIClient) -> None:
    make_user(email="taken@example.com")
    body = client.get("/api/verification", {"email": "taken@example.com"}).json()
    assert body == {"success": False, "message": "邮箱地址已被占用"}


def test_mail_failure_is_reported(client: APIClient, settings) -> None:
    settings.EMAIL_BACKEND = "accounts.email.OptionsEmailBackend"
    body = client.get("/api/verification", {"email": "n@example.com"}).json()
    assert body == {"success": False, "message": "SMTP 服务器未配置"}


# --- password reset ------------------------------------------------------------------------


def reset_link() -> tuple[str, dict[str, str]]:
    match = re.search(r"(\S+/user/reset\?\S+)", mail.outbox[-1].body)
    assert match, mail.outbox[-1].body
    url = urlsplit(match.group(1))
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    return f"{url.scheme}://{url.netloc}{url.path}", query


def test_password_reset_flow(client: APIClient) -> None:
    options.set_option("ServerAddress", "https://gw.example.com/")
    make_user(username="alice", email="a+b@example.com", password="old-password")

    body = client.get("/api/reset_password", {"email": "a+b@example.com"}).json()
    assert body == {"success": True, "message": ""}
    assert mail.outbox[-1].subject == "One API密码重置"
    base, query = reset_link()
    assert base == "https://gw.example.com/user/reset"
    assert query["email"] == "a+b@example.com"
    assert len(query["token"]) == 32

    reset = client.post("/api/user/reset", query, format="json").json()
    assert reset["success"] is True
    new_password = reset["data"]
    assert len(new_password) == 12
    assert login(client, "alice", "old-password")["success"] is False
    assert login(client, "alice", new_password)["success"] is True
    # The token is single-use.
    again = client.post("/api/user/reset", query, format="json").json()
    assert again == {"success": False, "message": "重置链接非法或已过期"}


def test_reset_link_never_trusts_the_host_header(client: APIClient) -> None:
    make_user(email="a@example.com")
    client.get("/api/reset_password", {"email": "a@example.com"}, HTTP_HOST="evil.example")
    # No ServerAddress: One API's default, not the (forgeable) Host of the request.
    assert reset_link()[0] == "http://localhost:3000/user/reset"


def test_codes_and_states_tolerate_any_text(client: APIClient) -> None:
    options.set_option("EmailVerificationEnabled", "true")
    client.get("/api/verification", {"email": "n@example.com"})
    body = register(client, email="n@example.com", verification_code="验证码")
    assert body["message"] == "验证码错误或已过期"
    client.get("/api/oauth/state")
    assert client.get("/api/oauth/github", {"code": "c", "state": "状态"}).status_code == 403


def test_reset_refusals(client: APIClient) -> None:
    unknown = client.get("/api/reset_password", {"email": "who@example.com"}).json()
    assert unknown == {"success": False, "message": "该邮箱地址未注册"}
    make_user(email="a@example.com")
    bad = client.post(
        "/api/user/reset", {"email": "a@example.com", "token": "0" * 32}, format="json"
    ).json()
    assert bad == {"success": False, "message": "重置链接非法或已过期"}
    empty = client.post("/api/user/reset", {"email": "a@example.com"}, format="json").json()
    assert empty == {"success": False, "message": "无效的参数"}


# --- Turnstile -----------------------------------------------------------------------------


@pytest.fixture
def turnstile(settings) -> Iterator[FakeTurnstile]:
    with FakeTurnstile(secret="ts-secret") as fake:
        settings.ONEAPI_TURNSTILE_VERIFY_URL = fake.verify_url
        options.set_option("TurnstileSiteKey", "site-key")
        options.set_option("TurnstileSecretKey", "ts-secret")
        options.set_option("TurnstileCheckEnabled", "true")
        yield fake


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/verification?email=n@example.com"),
        ("get", "/api/reset_password?email=n@example.com"),
        ("post", "/api/user/register"),
    ],
)
def test_turnstile_guards_routes(
    client: APIClient, turnstile: FakeTurnstile, method: str, path: str
) -> None:
    if "reset" in path:
        make_user(username="someone", email="n@example.com")
    body = {"username": "newbie", "password": "password123"}

    def call(suffix: str = "") -> dict:
        separator = "&" if "?" in path else "?"
        url = path + (separator + suffix if suffix else "")
        if method == "get":
            return client.get(url).json()
        return client.post(url, body, format="json").json()

    assert call() == {"success": False, "message": "Turnstile token 为空"}
    assert call("turnstile=forged") == {
        "success": False,
        "message": "Turnstile 校验失败，请刷新重试！",
    }
    turnstile.accepted.add("good-token")
    assert call("turnstile=good-token")["success"] is True
    verify = turnstile.requests[-1]
    assert verify.form == {"secret": "ts-secret", "response": "good-token", "remoteip": "127.0.0.1"}
    # Verified once per session, as One API.
    count = len(turnstile.requests)
    assert call()["message"] != "Turnstile token 为空"
    assert len(turnstile.requests) == count


def test_turnstile_off_needs_no_token(client: APIClient, turnstile: FakeTurnstile) -> None:
    options.set_option("TurnstileCheckEnabled", "false")
    assert register(client)["success"] is True
    assert turnstile.requests == []


def test_turnstile_unreachable(client: APIClient, turnstile: FakeTurnstile, settings) -> None:
    settings.ONEAPI_TURNSTILE_VERIFY_URL = "http://127.0.0.1:9/siteverify"
    body = client.get("/api/verification", {"email": "n@example.com", "turnstile": "t"}).json()
    assert body == {"success": False, "message": "无法连接至 Turnstile 服务器，请稍后重试！"}


# --- WeChat --------------------------------------------------------------------------------


@pytest.fixture
def wechat_server() -> Iterator[FakeWeChatServer]:
    with FakeWeChatServer(token="wx-token") as fake:
        options.set_option("WeChatServerAddress", fake.base_url + "/")
        options.set_option("WeChatServerToken", "wx-token")
        options.set_option("WeChatAuthEnabled", "true")
        yield fake


def test_wechat_login_registers_then_logs_in(
    client: APIClient, wechat_server: FakeWeChatServer
) -> None:
    top = make_user(username="existing").pk
    body = client.get("/api/oauth/wechat", {"code": wechat_server.issue("openid-1")}).json()

    assert body["success"] is True
    assert body["data"]["username"] == f"wechat_{top + 1}"
    assert body["data"]["display_name"] == "WeChat User"
    user = User.objects.get(wechat_id="openid-1")
    assert ApiKey.objects.filter(user=user).exists()
    assert wechat_server.requests[-1].headers["authorization"] == "wx-token"
    assert client.get("/api/models").status_code == 200

    other = APIClient()
    again = other.get("/api/oauth/wechat", {"code": wechat_server.issue("openid-1")}).json()
    assert again["data"]["id"] == user.pk
    assert User.objects.filter(wechat_id="openid-1").count() == 1


def test_wechat_refusals(client: APIClient, wechat_server: FakeWeChatServer) -> None:
    def call(code: str) -> dict:
        return client.get("/api/oauth/wechat", {"code": code}).json()

    assert call("unknown") == {"success": False, "message": "验证码错误或已过期"}
    assert call("") == {"success": False, "message": "无效的参数"}

    options.set_option("WeChatServerToken", "wrong")
    assert call(wechat_server.issue("x"))["message"] == "无权进行此操作，Token 无效"
    options.set_option("WeChatServerToken", "wx-token")

    options.set_option("RegisterEnabled", "false")
    assert call(wechat_server.issue("new"))["message"] == "管理员关闭了新用户注册"
    options.set_option("RegisterEnabled", "true")

    make_user(username="banned", wechat_id="banned-id", status=UserStatus.DISABLED)
    assert call(wechat_server.issue("banned-id"))["message"] == "用户已被封禁"

    options.set_option("WeChatAuthEnabled", "false")
    body = call(wechat_server.issue("x"))
    assert body == {"success": False, "message": "管理员未开启通过微信登录以及注册"}

    options.set_option("WeChatAuthEnabled", "true")
    options.set_option("WeChatServerAddress", "http://127.0.0.1:9")
    assert call("abc")["message"] == "无法连接至微信服务器，请稍后重试！"


def test_wechat_bind(actors: Actors, wechat_server: FakeWeChatServer) -> None:
    anonymous = actors.client("anonymous").get(
        "/api/oauth/wechat/bind", {"code": wechat_server.issue("wx-1")}
    )
    assert anonymous.status_code == 401

    alice = actors.client("user")
    body = alice.get("/api/oauth/wechat/bind", {"code": wechat_server.issue("wx-1")}).json()
    assert body == {"success": True, "message": ""}
    actors.user.refresh_from_db()
    assert actors.user.wechat_id == "wx-1"

    bob = actors.session_client("other")
    taken = bob.get("/api/oauth/wechat/bind", {"code": wechat_server.issue("wx-1")}).json()
    assert taken == {"success": False, "message": "该微信账号已被绑定"}

    options.set_option("WeChatAuthEnabled", "false")
    off = bob.get("/api/oauth/wechat/bind", {"code": wechat_server.issue("wx-2")}).json()
    assert off["message"] == "管理员未开启通过微信登录以及注册"


# --- email binding -------------------------------------------------------------------------


def test_email_bind_needs_login_and_a_live_code(actors: Actors) -> None:
    anonymous = actors.client("anonymous").get(
        "/api/oauth/email/bind", {"email": "a@example.com", "code": "x"}
    )
    assert anonymous.status_code == 401

    alice = actors.session_client("user")
    wrong = alice.get("/api/oauth/email/bind", {"email": "a@example.com", "code": "x"}).json()
    assert wrong == {"success": False, "message": "验证码错误或已过期"}

    assert alice.get("/api/verification", {"email": "a@example.com"}).json()["success"]
    code = last_code()
    bound = alice.get("/api/oauth/email/bind", {"email": "a@example.com", "code": code}).json()
    assert bound == {"success": True, "message": ""}
    actors.user.refresh_from_db()
    assert actors.user.email == "a@example.com"
    # Now taken: another verification for it is refused.
    taken = alice.get("/api/verification", {"email": "a@example.com"}).json()
    assert taken["message"] == "邮箱地址已被占用"


def test_email_bind_by_access_token(actors: Actors) -> None:
    bob = actors.client("other")
    bob.get("/api/verification", {"email": "b@example.com"})
    body = bob.get("/api/oauth/email/bind", {"email": "b@example.com", "code": last_code()})
    assert body.json()["success"] is True
    actors.other.refresh_from_db()
    assert actors.other.email == "b@example.com"
