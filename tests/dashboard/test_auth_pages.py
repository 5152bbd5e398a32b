"""Sign-in, sign-up, password reset and OAuth pages, on `accounts.auth_services`' rules."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from accounts import auth_services
from accounts.bootstrap import ensure_root_account
from accounts.models import User
from billing.models import Log
from oneapi import options
from tests.dashboard.conftest import ENGLISH, HTMX, People, page_html
from tests.factories import make_user
from tests.fakes.oauth_servers import FakeGitHub

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_login_by_username_or_email_then_logout() -> None:
    make_user(username="bob", email="bob@example.com", password="password123")
    client = Client()
    response = client.post("/login", {"username": "bob@example.com", "password": "password123"})
    assert response.status_code == 302 and response["Location"] == "/dashboard"
    assert client.get("/api/user/self").json()["data"]["username"] == "bob"

    assert client.post("/logout").status_code == 302
    assert client.get("/api/user/self").status_code == 401


def test_login_follows_next_only_inside_the_site() -> None:
    make_user(username="bob", password="password123")
    inside = Client().post(
        "/login?next=/token", {"username": "bob", "password": "password123", "next": "/token"}
    )
    assert inside["Location"] == "/token"
    outside = Client().post(
        "/login", {"username": "bob", "password": "password123", "next": "https://evil.test/"}
    )
    assert outside["Location"] == "/dashboard"


def test_root_with_the_default_password_is_sent_to_change_it() -> None:
    ensure_root_account()
    client = Client()
    response = client.post("/login", {"username": "root", "password": "123456"}, headers=ENGLISH)
    assert response["Location"] == "/setting"
    html = page_html(client.get("/setting", headers=ENGLISH))
    assert "You are using the default root password: change it now." in html


def test_login_refusals() -> None:
    make_user(username="bob", password="password123")
    wrong = page_html(
        Client().post("/login", {"username": "bob", "password": "nope"}, headers=ENGLISH)
    )
    assert "Wrong username or password" in wrong
    options.set_option("PasswordLoginEnabled", "false")
    closed = page_html(Client().get("/login", headers=ENGLISH))
    assert "Password login is disabled by the administrator." in closed
    assert 'name="password"' not in closed


def test_login_attempts_share_the_api_rate_limit() -> None:
    client = Client()
    for _ in range(20):
        client.post(
            "/api/user/login", {"username": "x", "password": "y"}, content_type="application/json"
        )
    html = page_html(client.post("/login", {"username": "x", "password": "y"}, headers=ENGLISH))
    assert "Too many attempts" in html


def test_register_with_an_invitation_code() -> None:
    options.set_option("QuotaForInviter", "1000")
    options.set_option("QuotaForInvitee", "500")
    inviter = make_user(username="inviter", aff_code="AbCd")
    form = page_html(Client().get("/register?aff=AbCd"))
    assert 'name="aff_code" value="AbCd"' in form

    client = Client()
    response = client.post(
        "/register",
        {
            "username": "newbie",
            "password": "password123",
            "password2": "password123",
            "aff_code": "AbCd",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/login"
    user = User.objects.get(username="newbie")
    assert user.inviter_id == inviter.pk and user.quota == 500
    inviter.refresh_from_db()
    assert inviter.quota == 1000
    assert user.keys.filter(name="default").exists()
    assert Log.objects.filter(user_id=user.pk).exists()


def test_register_form_errors_and_closed_registration() -> None:
    make_user(username="taken")
    client = Client()
    mismatch = client.post(
        "/register",
        {"username": "x", "password": "password123", "password2": "password124"},
        headers=ENGLISH,
    )
    assert "The two passwords differ." in page_html(mismatch)
    taken = client.post(
        "/register",
        {"username": "taken", "password": "password123", "password2": "password123"},
        headers=ENGLISH,
    )
    assert "This username is taken." in page_html(taken)
    options.set_option("RegisterEnabled", "false")
    closed = page_html(client.get("/register", headers=ENGLISH))
    assert "Registration is closed by the administrator." in closed
    assert 'name="username"' not in closed


def test_register_with_email_verification() -> None:
    options.set_option("EmailVerificationEnabled", "true")
    client = Client()
    form = page_html(client.get("/register"))
    assert 'name="verification_code"' in form and 'hx-post="/register/code"' in form

    sent = client.post("/register/code", {"email": "n@example.com"}, headers={**HTMX, **ENGLISH})
    assert 'id="code-status"' in page_html(sent) and "A code has been sent" in sent.content.decode()
    code = re.search(r"您的验证码为: (\w+)", mail.outbox[-1].body).group(1)

    fields = {"username": "mailer", "password": "password123", "password2": "password123"}
    missing = client.post("/register", fields, headers=ENGLISH)
    assert "Email verification is required" in page_html(missing)
    done = client.post("/register", {**fields, "email": "n@example.com", "verification_code": code})
    assert done.status_code == 302
    assert User.objects.get(username="mailer").email == "n@example.com"


def test_send_code_without_javascript_shows_the_form_again() -> None:
    options.set_option("EmailVerificationEnabled", "true")
    response = Client().post(
        "/register/code", {"email": "n@example.com", "username": "kept", "password": "secret"}
    )
    html = page_html(response)
    assert html.startswith("<!doctype html>")
    assert 'value="kept"' in html and "secret" not in html
    assert len(mail.outbox) == 1


def test_password_reset_by_mail() -> None:
    user = make_user(username="forgetful", email="f@example.com", password="password123")
    client = Client()
    sent = page_html(client.post("/reset", {"email": "f@example.com"}, headers=ENGLISH))
    assert "a reset link is on its way" in sent
    link = re.search(r"(\S+/user/reset\?\S+)", mail.outbox[-1].body).group(1)
    query = parse_qs(urlsplit(link).query)
    path = f"/user/reset?{urlsplit(link).query}"

    # Opening the link changes nothing (mail scanners open links too).
    page = page_html(client.get(path, headers=ENGLISH))
    assert "Reset the password now" in page
    user.refresh_from_db()
    assert user.check_password("password123")

    done = page_html(
        client.post("/user/reset", {"email": query["email"][0], "token": query["token"][0]})
    )
    password = re.search(r"<code data-secret>(\w{12})</code>", done).group(1)
    user.refresh_from_db()
    assert user.check_password(password)
    again = client.post(
        "/user/reset", {"email": query["email"][0], "token": query["token"][0]}, headers=ENGLISH
    )
    assert "The reset link is invalid or has expired." in page_html(again)


def test_reset_for_an_unknown_email() -> None:
    html = page_html(Client().post("/reset", {"email": "nobody@example.com"}, headers=ENGLISH))
    assert "No account uses this email address." in html


@pytest.fixture
def github(settings: Any) -> Iterator[FakeGitHub]:  # pytest-django's settings fixture
    with FakeGitHub(client_id="gh-id", client_secret="gh-secret") as fake:
        settings.ONEAPI_GITHUB_URL = fake.base_url
        settings.ONEAPI_GITHUB_API_URL = fake.base_url
        options.set_option("GitHubClientId", "gh-id")
        options.set_option("GitHubClientSecret", "gh-secret")
        options.set_option("GitHubOAuthEnabled", "true")
        yield fake


OCTO = {"login": "octocat", "id": 583231, "name": "The Octocat", "email": "octo@github.test"}


def test_github_sign_in_through_the_pages(github: FakeGitHub) -> None:
    client = Client()
    assert 'href="/login/github"' in page_html(client.get("/login"))
    start = client.get("/login/github")
    assert start.status_code == 302
    target = urlsplit(start["Location"])
    assert f"{target.scheme}://{target.netloc}" == github.base_url
    state = parse_qs(target.query)["state"][0]
    assert parse_qs(target.query)["client_id"] == ["gh-id"]

    callback = client.get("/oauth/github", {"code": github.authorize(OCTO), "state": state})
    assert callback.status_code == 302 and callback["Location"] == "/dashboard"
    assert client.get("/api/user/self").json()["data"]["github_id"] == "octocat"


def test_github_callback_refuses_a_wrong_state(github: FakeGitHub) -> None:
    client = Client()
    client.get("/login/github")
    response = client.get(
        "/oauth/github", {"code": github.authorize(OCTO), "state": "forged"}, headers=ENGLISH
    )
    assert response.status_code == 400
    assert "The sign-in expired or came from elsewhere" in response.content.decode()
    assert not User.objects.filter(github_id="octocat").exists()


def test_github_binds_when_signed_in(github: FakeGitHub, people: People) -> None:
    client = people.client("user")
    state = parse_qs(urlsplit(client.get("/login/github")["Location"]).query)["state"][0]
    response = client.get("/oauth/github", {"code": github.authorize(OCTO), "state": state})
    assert response["Location"] == "/setting"
    people.user.refresh_from_db()
    assert people.user.github_id == "octocat"


def test_wechat_login_disabled() -> None:
    response = Client().post("/login/wechat", {"code": "123"}, headers=ENGLISH)
    assert response.status_code == 400
    assert "Sign-in with WeChat is not enabled." in response.content.decode()


def test_auth_services_messages_are_all_translated() -> None:
    from dashboard.service_errors import MESSAGES

    for message in (auth_services.WRONG_CREDENTIALS, auth_services.USERNAME_TAKEN):
        assert message in MESSAGES
