"""GitHub and Feishu sign-in end to end against fake providers over real HTTP: state, code
exchange, profile, then login, registration or binding; plus allauth's own pages, and one
run through a real Daphne process with the session cookie."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import httpx
import pytest
from allauth.socialaccount.models import SocialAccount
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import User, UserStatus
from billing.models import ApiKey
from oneapi import cli, options
from tests.api.conftest import Actors
from tests.conftest import child_env, free_port, stop_process, wait_for_http
from tests.factories import make_user
from tests.fakes.oauth_servers import FakeFeishu, FakeGitHub

pytestmark = pytest.mark.django_db

STATE_MISMATCH = {"success": False, "message": "state is empty or not same"}


@pytest.fixture(autouse=True)
def clean_cache() -> None:
    cache.clear()


@pytest.fixture
def github(settings) -> Iterator[FakeGitHub]:
    with FakeGitHub(client_id="gh-id", client_secret="gh-secret") as fake:
        settings.ONEAPI_GITHUB_URL = fake.base_url
        settings.ONEAPI_GITHUB_API_URL = fake.base_url
        options.set_option("GitHubClientId", "gh-id")
        options.set_option("GitHubClientSecret", "gh-secret")
        options.set_option("GitHubOAuthEnabled", "true")
        yield fake


@pytest.fixture
def feishu(settings) -> Iterator[FakeFeishu]:
    with FakeFeishu(client_id="cli_a1", client_secret="lark-secret") as fake:
        settings.ONEAPI_FEISHU_URL = fake.base_url
        options.set_option("ServerAddress", "https://gw.example.com")
        options.set_option("LarkClientId", "cli_a1")
        options.set_option("LarkClientSecret", "lark-secret")
        yield fake


def new_state(client: APIClient) -> str:
    body = client.get("/api/oauth/state").json()
    assert body["success"] is True
    return body["data"]


def github_callback(client: APIClient, code: str, state: str | None = None) -> dict:
    state = new_state(client) if state is None else state
    response = client.get("/api/oauth/github", {"code": code, "state": state})
    return response.json()


OCTO = {"login": "octocat", "id": 583231, "name": "The Octocat", "email": "octo@github.test"}


# --- state ---------------------------------------------------------------------------------


def test_state_is_twelve_characters_kept_in_the_session() -> None:
    client = APIClient()
    state = new_state(client)
    assert len(state) == 12 and state.isalnum()
    assert client.session["oauth_state"] == state
    assert new_state(client) != state


@pytest.mark.parametrize("path", ["/api/oauth/github", "/api/oauth/lark"])
def test_wrong_or_missing_state_is_403(path: str) -> None:
    client = APIClient()
    assert client.get(path, {"code": "c", "state": "whatever"}).status_code == 403
    new_state(client)
    wrong = client.get(path, {"code": "c", "state": "not-the-one"})
    assert wrong.status_code == 403
    assert wrong.json() == STATE_MISMATCH
    missing = client.get(path, {"code": "c"})
    assert missing.status_code == 403


# --- GitHub --------------------------------------------------------------------------------


def test_github_registers_then_logs_in(github: FakeGitHub) -> None:
    top = make_user(username="existing").pk
    client = APIClient()

    body = github_callback(client, github.authorize(OCTO))

    assert body["success"] is True, body
    assert body["data"]["username"] == f"github_{top + 1}"
    assert body["data"]["display_name"] == "The Octocat"
    user = User.objects.get(github_id="octocat")  # One API stores the login
    assert user.email == "octo@github.test"
    assert ApiKey.objects.filter(user=user, name="default").exists()
    assert client.get("/api/models").status_code == 200

    # The exchange went through allauth's client with the app from the options.
    token_request = next(r for r in github.requests if r.path == "/login/oauth/access_token")
    assert token_request.form["client_id"] == "gh-id"
    assert token_request.form["client_secret"] == "gh-secret"
    assert "redirect_uri" not in token_request.form
    assert github.paths()[-1] == "/user"
    # allauth's table mirrors the link (numeric GitHub id as its uid).
    account = SocialAccount.objects.get(provider="github")
    assert (account.uid, account.user_id) == ("583231", user.pk)

    again = github_callback(APIClient(), github.authorize(OCTO))
    assert again["data"]["id"] == user.pk
    assert User.objects.filter(github_id="octocat").count() == 1


def test_github_without_a_name_gets_the_default_display_name(github: FakeGitHub) -> None:
    body = github_callback(APIClient(), github.authorize({"login": "anon", "id": 7}))
    assert body["data"]["display_name"] == "GitHub User"


def test_github_disabled(github: FakeGitHub) -> None:
    options.set_option("GitHubOAuthEnabled", "false")
    body = github_callback(APIClient(), github.authorize(OCTO))
    assert body == {"success": False, "message": "管理员未开启通过 GitHub 登录以及注册"}
    assert github.requests == []


def test_github_respects_register_enabled(github: FakeGitHub) -> None:
    options.set_option("RegisterEnabled", "false")
    body = github_callback(APIClient(), github.authorize(OCTO))
    assert body == {"success": False, "message": "管理员关闭了新用户注册"}
    assert not User.objects.filter(github_id="octocat").exists()
    # An already bound identity still logs in.
    make_user(username="octo", github_id="octocat")
    assert github_callback(APIClient(), github.authorize(OCTO))["success"] is True


def test_github_refuses_disabled_users(github: FakeGitHub) -> None:
    make_user(username="octo", github_id="octocat", status=UserStatus.DISABLED)
    client = APIClient()
    body = github_callback(client, github.authorize(OCTO))
    assert body == {"success": False, "message": "用户已被封禁"}
    assert client.get("/api/models").status_code == 401


def test_github_binds_to_the_logged_in_user(github: FakeGitHub, actors: Actors) -> None:
    alice = actors.session_client("user")
    body = github_callback(alice, github.authorize(OCTO))
    assert body == {"success": True, "message": "bind"}
    actors.user.refresh_from_db()
    assert actors.user.github_id == "octocat"
    assert User.objects.count() == 4  # no new account

    bob = actors.session_client("other")
    taken = github_callback(bob, github.authorize(OCTO))
    assert taken == {"success": False, "message": "该 GitHub 账户已被绑定"}


def test_github_bad_code_and_runtime_credentials(github: FakeGitHub) -> None:
    client = APIClient()
    bad = github_callback(client, "not-a-code")
    assert bad == {"success": False, "message": "GitHub 授权失败，请重新登录"}
    assert github_callback(client, "")["message"] == "无效的参数"

    # A new secret set by the admin applies to the next request, without a restart.
    options.set_option("GitHubClientSecret", "rotated")
    refused = github_callback(client, github.authorize(OCTO))
    assert refused["success"] is False
    github.client_secret = "rotated"
    assert github_callback(client, github.authorize(OCTO))["success"] is True


def test_github_unreachable(github: FakeGitHub, settings) -> None:
    settings.ONEAPI_GITHUB_URL = "http://127.0.0.1:9"
    body = github_callback(APIClient(), "code")
    assert body == {"success": False, "message": "无法连接至 GitHub 服务器，请稍后重试！"}


# --- Feishu / Lark -------------------------------------------------------------------------


def lark_callback(client: APIClient, code: str) -> dict:
    state = new_state(client)
    return client.get("/api/oauth/lark", {"code": code, "state": state}).json()


LARK_USER = {"open_id": "ou_123", "name": "飞书用户甲"}


def test_lark_registers_then_logs_in(feishu: FakeFeishu) -> None:
    top = make_user(username="existing").pk
    client = APIClient()
    code = feishu.authorize(LARK_USER, redirect_uri="https://gw.example.com/oauth/lark")

    body = lark_callback(client, code)

    assert body["success"] is True, body
    assert body["data"]["username"] == f"lark_{top + 1}"
    assert body["data"]["display_name"] == "飞书用户甲"
    user = User.objects.get(lark_id="ou_123")
    assert client.get("/api/models").status_code == 200
    token_request = next(r for r in feishu.requests if r.path.endswith("/oauth/token"))
    assert token_request.json == {
        "grant_type": "authorization_code",
        "client_id": "cli_a1",
        "client_secret": "lark-secret",
        "code": code,
        "redirect_uri": "https://gw.example.com/oauth/lark",
    }
    assert feishu.paths()[-1] == "/open-apis/authen/v1/user_info"

    again = lark_callback(APIClient(), feishu.authorize(LARK_USER))
    assert again["data"]["id"] == user.pk


def test_lark_needs_no_switch_but_refuses_bad_codes(feishu: FakeFeishu) -> None:
    assert not options.get_bool("GitHubOAuthEnabled")
    body = lark_callback(APIClient(), "bogus")
    assert body == {"success": False, "message": "飞书 授权失败，请重新登录"}


def test_lark_bind_and_taken(feishu: FakeFeishu, actors: Actors) -> None:
    alice = actors.session_client("user")
    assert lark_callback(alice, feishu.authorize(LARK_USER)) == {"success": True, "message": "bind"}
    actors.user.refresh_from_db()
    assert actors.user.lark_id == "ou_123"
    taken = lark_callback(actors.session_client("other"), feishu.authorize(LARK_USER))
    assert taken == {"success": False, "message": "该飞书账户已被绑定"}


# --- allauth's own pages -------------------------------------------------------------------


def test_allauth_pages_follow_the_options(github: FakeGitHub) -> None:
    client = APIClient()
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert "/accounts/github/login/" in page.content.decode()
    options.set_option("GitHubOAuthEnabled", "false")
    assert "/accounts/github/login/" not in client.get("/accounts/login/").content.decode()

    options.set_option("RegisterEnabled", "false")
    closed = client.get("/accounts/signup/").content.decode()
    assert 'name="password1"' not in closed


def test_allauth_signup_applies_one_api_limits() -> None:
    page = APIClient().post(
        "/accounts/signup/",
        {
            "username": "far-too-long-name",
            "email": "v@example.com",
            "password1": "short",
            "password2": "short",
        },
    )
    assert page.status_code == 200
    text = page.content.decode()
    assert "用户名长度不能超过 12 个字符" in text
    assert "密码长度应为 8–20 个字符" in text
    assert not User.objects.exists()


def test_allauth_signup_creates_a_full_account() -> None:
    client = APIClient()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "viaallauth",
            "email": "v@example.com",
            "password1": "a-Long-passw0rd",
            "password2": "a-Long-passw0rd",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(username="viaallauth")
    assert ApiKey.objects.filter(user=user, name="default").exists()
    assert user.check_password("a-Long-passw0rd")


def test_allauth_social_flow_hooks_use_one_api_accounts(github: FakeGitHub) -> None:
    """allauth's own GitHub flow (`/accounts/github/...`) goes through the same adapter:
    an identity bound the One API way logs into its user, a new one gets `github_<n>`."""
    from allauth.core import context
    from django.test import RequestFactory

    from accounts.adapters import SocialAccountAdapter
    from accounts.oauth import github_identity

    adapter = SocialAccountAdapter()
    request = RequestFactory().get("/accounts/github/login/callback/")
    bound = make_user(username="legacy", github_id="octocat")
    with context.request_context(request):
        sociallogin = github_identity(request, github.authorize(OCTO)).sociallogin
        adapter.pre_social_login(request, sociallogin)
        assert sociallogin.is_existing and sociallogin.user.pk == bound.pk

        other = {"login": "hubber", "id": 99, "name": "Hub Ber"}
        fresh = github_identity(request, github.authorize(other)).sociallogin
        fresh.lookup()
        adapter.pre_social_login(request, fresh)
        assert not fresh.is_existing
        user = adapter.save_user(request, fresh)
    assert user.username.startswith("github_") and user.github_id == "hubber"
    assert user.display_name == "Hub Ber"
    assert ApiKey.objects.filter(user=user).exists()
    assert SocialAccount.objects.get(uid="99").user_id == user.pk


# --- a real server -------------------------------------------------------------------------


@pytest.fixture
def daphne_with_fake_github(transactional_db: None) -> Iterator[tuple[str, FakeGitHub]]:
    """The gateway's Daphne in its own process, its GitHub endpoints pointed at the fake."""
    with FakeGitHub(client_id="gh-id", client_secret="gh-secret") as fake:
        options.set_option("GitHubClientId", "gh-id")
        options.set_option("GitHubClientSecret", "gh-secret")
        options.set_option("GitHubOAuthEnabled", "true")
        port = free_port()
        env = child_env(ONEAPI_GITHUB_URL=fake.base_url, ONEAPI_GITHUB_API_URL=fake.base_url)
        process = subprocess.Popen(
            cli.web_command("daphne", "127.0.0.1", port),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_for_http(base_url + "/api/status", process=process)
            yield base_url, fake
        finally:
            stop_process(process)


@pytest.mark.integration
def test_github_login_through_daphne(daphne_with_fake_github: tuple[str, FakeGitHub]) -> None:
    base_url, github = daphne_with_fake_github
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        state = browser.get("/api/oauth/state").json()["data"]
        # The browser visits GitHub, which sends it back to the front-end with a code.
        authorize = httpx.get(
            f"{github.base_url}/login/oauth/authorize",
            params={"client_id": "gh-id", "state": state, "redirect_uri": base_url + "/oauth"},
        )
        callback = httpx.URL(authorize.headers["location"])
        assert callback.params["state"] == state

        body = browser.get(
            "/api/oauth/github",
            params={"code": callback.params["code"], "state": state},
        ).json()

        assert body["success"] is True, body
        assert "session" in browser.cookies
        assert browser.get("/api/models").json()["success"] is True
        assert browser.get("/api/user/logout").json()["success"] is True
        assert browser.get("/api/models").status_code == 401
    assert User.objects.filter(github_id="octocat").exists()
