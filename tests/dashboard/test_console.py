"""The signed-in pages: dashboard, API keys, logs, top-up, models, personal settings."""

from __future__ import annotations

import json
import re
import time

import pytest
from django.core import mail
from django.core.cache import cache
from django.http import HttpResponse

from accounts import auth_services
from accounts.models import User
from billing import services as billing
from billing.models import ApiKey, KeyStatus, Log, LogType, RedemptionStatus
from oneapi import options
from tests.dashboard.conftest import ENGLISH, HTMX, People, page_html
from tests.factories import make_channel


def consume(user: User, model: str = "gpt-3.5-turbo", quota: int = 8, at: int | None = None) -> Log:
    return Log.objects.create(
        user_id=user.pk,
        username=user.username,
        created_at=at or int(time.time()),
        type=LogType.CONSUME,
        model_name=model,
        token_name="ci key",
        quota=quota,
        prompt_tokens=11,
        completion_tokens=7,
        channel_id=3,
        elapsed_time=1234,
    )


def new_key(user: User, **fields: object) -> ApiKey:
    """A key through the service, with defaults for whatever fields it takes."""
    defaults = {"name": "k", "expired_time": -1, "remain_quota": 0, "unlimited_quota": True}
    values = {name: "" if name in ("models", "subnet") else 0 for name in billing.TOKEN_EDITABLE}
    return billing.create_token(user.pk, {**values, **defaults, **fields})


def toast_of(response: HttpResponse) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


# --- dashboard ------------------------------------------------------------------------------


def test_dashboard_shows_balance_and_usage_by_day_and_model(people: People) -> None:
    consume(people.user, "gpt-3.5-turbo", 8)
    consume(people.user, "gpt-3.5-turbo", 8)
    consume(people.user, "gpt-4o-mini", 20, at=int(time.time()) - 3 * 86400)
    consume(people.admin, "someone-elses-model", 99)
    html = page_html(people.client("user").get("/dashboard", headers=ENGLISH))

    assert "$2.00" in html  # 1,000,000 quota at 500,000 a dollar
    assert "data-period-requests>3<" in html
    assert (
        '<tr data-model="gpt-3.5-turbo"><th scope="row">gpt-3.5-turbo</th><td class="num">2</td>'
        in html
    )
    assert "someone-elses-model" not in html
    assert html.count('<figure class="card chart"') == 3
    assert 'data-model="gpt-4o-mini"' in html and "gpt-3.5-turbo: 2</title>" in html


def test_dashboard_range_switch_is_a_fragment(people: People) -> None:
    consume(people.user, "old-model", 5, at=int(time.time()) - 20 * 86400)
    client = people.client("user")
    week = page_html(client.get("/dashboard?days=7", headers=HTMX))
    assert week.lstrip().startswith('<section id="usage"') and "old-model" not in week
    month = page_html(client.get("/dashboard?days=30", headers=HTMX))
    assert "old-model" in month
    assert month.count('<g class="bar"') == 30 * 3
    assert 'aria-current="true">30' in month
    # An unknown range is the default week.
    assert page_html(client.get("/dashboard?days=9", headers=HTMX)).count('<g class="bar"') == 7 * 3


# --- API keys -------------------------------------------------------------------------------


def test_create_a_key_and_see_it_once_in_full(people: People) -> None:
    make_channel(models="gpt-3.5-turbo,gpt-4o-mini")
    client = people.client("user")
    form = page_html(client.get("/token/add"))
    assert 'value="gpt-4o-mini"' in form  # the models the user's group can call

    response = client.post(
        "/token/add",
        {
            "name": "ci key",
            "remain_quota": "1000",
            "models": ["gpt-4o-mini"],
            "subnet": "10.0.0.0/8, 192.168.1.1",
            "expires_at": "2099-01-01T00:00",
            "rpm_limit": "60",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/token"
    key = ApiKey.objects.get(user=people.user, name="ci key")
    assert (key.remain_quota, key.unlimited_quota, key.models) == (1000, False, "gpt-4o-mini")
    assert key.subnet == "10.0.0.0/8,192.168.1.1" and key.expired_time > time.time()
    if "rpm_limit" in billing.TOKEN_EDITABLE:
        assert key.rpm_limit == 60

    listing = page_html(client.get("/token"))
    assert f'<code id="new-key" data-secret>sk-{key.key}</code>' in listing
    assert f'data-copy="sk-{key.key}"' in listing
    # Shown once: the next visit only lists it.
    assert 'id="new-key"' not in page_html(client.get("/token"))


def test_key_form_validation(people: People) -> None:
    html = page_html(
        people.client("user").post(
            "/token/add", {"name": "x" * 31, "subnet": "not-a-net"}, headers=ENGLISH
        )
    )
    assert "Not an address or network: not-a-net" in html
    assert "at most 30 characters" in html
    assert not ApiKey.objects.filter(user=people.user).exists()


def test_edit_a_key(people: People) -> None:
    key = new_key(people.user, name="old")
    client = people.client("user")
    form = page_html(client.get(f"/token/edit/{key.pk}"))
    assert 'value="old"' in form
    response = client.post(f"/token/edit/{key.pk}", {"name": "new", "unlimited_quota": "on"})
    assert response.status_code == 302
    key.refresh_from_db()
    assert (key.name, key.unlimited_quota, key.remain_quota) == ("new", True, -1)


def test_keys_of_others_are_not_found(people: People) -> None:
    theirs = new_key(people.admin, name="admin's")
    client = people.client("user")
    assert client.get(f"/token/edit/{theirs.pk}").status_code == 404
    assert client.post(f"/token/{theirs.pk}/delete").status_code == 404
    assert client.post(f"/token/{theirs.pk}/status", {"status": "2"}).status_code == 404
    assert ApiKey.objects.filter(pk=theirs.pk, status=KeyStatus.ENABLED).exists()


def test_toggle_a_key_inline(people: People) -> None:
    key = new_key(people.user, name="k")
    client = people.client("user")
    response = client.post(f"/token/{key.pk}/status", {"status": "2"}, headers={**HTMX, **ENGLISH})
    html = page_html(response)
    assert html.lstrip().startswith(f'<tr id="token-{key.pk}"') and "Disabled" in html
    assert toast_of(response) == {"level": "success", "message": "API key disabled."}
    key.refresh_from_db()
    assert key.status == KeyStatus.DISABLED

    # An expired key cannot be enabled: the row stays, the toast says why.
    ApiKey.objects.filter(pk=key.pk).update(expired_time=int(time.time()) - 10)
    refused = client.post(f"/token/{key.pk}/status", {"status": "1"}, headers={**HTMX, **ENGLISH})
    assert toast_of(refused)["level"] == "error"
    assert "has expired" in toast_of(refused)["message"]
    key.refresh_from_db()
    assert key.status == KeyStatus.DISABLED

    # Without JavaScript: a redirect back with a flash message.
    plain = client.post(f"/token/{key.pk}/status", {"status": "2"})
    assert plain.status_code == 302 and plain["Location"] == "/token"


def test_toasts_in_chinese_are_ascii_headers(people: People) -> None:
    key = new_key(people.user, name="k")
    response = people.client("user").post(f"/token/{key.pk}/status", {"status": "2"}, headers=HTMX)
    assert response["HX-Trigger"].isascii()
    assert toast_of(response)["message"] == "令牌已禁用。"


def test_delete_a_key_with_confirmation(people: People) -> None:
    key = new_key(people.user, name="doomed")
    client = people.client("user")
    listing = page_html(client.get("/token", headers=ENGLISH))
    assert 'hx-confirm="Delete the API key “doomed”? Clients using it stop working."' in listing
    # Without JavaScript the delete button opens a confirmation page first.
    confirm = page_html(client.get(f"/token/{key.pk}/delete", headers=ENGLISH))
    assert "Please confirm" in confirm and f'action="/token/{key.pk}/delete"' in confirm
    assert ApiKey.objects.filter(pk=key.pk).exists()

    response = client.post(f"/token/{key.pk}/delete", headers=HTMX)
    assert response.status_code == 200 and response.content == b""
    assert toast_of(response)["level"] == "success"
    assert not ApiKey.objects.filter(pk=key.pk).exists()


def test_key_search_and_paging(people: People) -> None:
    for number in range(12):
        new_key(people.user, name=f"key-{number:02}")
    client = people.client("user")
    first = page_html(client.get("/token", headers=HTMX))
    assert first.count('<tr id="token-') == 10
    assert 'hx-get="?page=2"' in first
    second = page_html(client.get("/token?page=2", headers=HTMX))
    assert second.count('<tr id="token-') == 2 and 'hx-get="?page=1"' in second
    found = page_html(client.get("/token?keyword=key-1", headers=HTMX))
    assert found.count('<tr id="token-') == 2  # key-10, key-11


# --- logs -----------------------------------------------------------------------------------


def test_users_see_their_own_logs_admins_see_all(people: People) -> None:
    consume(people.user, "mine")
    consume(people.admin, "admins")
    user_html = page_html(people.client("user").get("/log"))
    assert 'data-log-model="mine"' in user_html and 'data-log-model="admins"' not in user_html
    assert 'name="username"' not in user_html

    admin_html = page_html(people.client("admin").get("/log"))
    assert 'data-log-model="mine"' in admin_html and 'data-log-model="admins"' in admin_html
    assert 'name="username"' in admin_html and 'name="channel"' in admin_html
    only_alice = page_html(people.client("admin").get("/log?username=alice", headers=HTMX))
    assert 'data-log-model="admins"' not in only_alice and 'data-log-model="mine"' in only_alice


def test_log_filters_and_sum(people: People) -> None:
    consume(people.user, "a", quota=500000)
    consume(people.user, "b", quota=250000)
    Log.objects.create(user_id=people.user.pk, type=LogType.TOPUP, content="top-up", quota=9)
    client = people.client("user")
    html = page_html(client.get("/log?model_name=a", headers={**HTMX, **ENGLISH}))
    assert html.lstrip().startswith('<div id="log-table"')
    assert 'data-log-model="a"' in html and 'data-log-model="b"' not in html
    assert "<strong>$1.00</strong>" in html
    topups = page_html(client.get("/log?type=1"))
    assert "top-up" in topups and 'data-log-model="a"' not in topups
    bad = page_html(client.get("/log?start=yesterday", headers=ENGLISH))
    assert "Some filters are not valid" in bad


# --- top-up -----------------------------------------------------------------------------------


def test_redeem_a_code(people: People) -> None:
    [code] = billing.create_redemptions(people.root.pk, "gift", 500000, 1)
    client = people.client("user")
    response = client.post("/topup", {"key": code}, headers={**HTMX, **ENGLISH})
    html = page_html(response)
    assert html.lstrip().startswith('<section id="redeem"')
    assert "Redeemed: $1.00 added to your balance." in html
    assert 'id="viewer-quota" hx-swap-oob="true">$3.00<' in html
    people.user.refresh_from_db()
    assert people.user.quota == 1_500_000
    assert Log.objects.filter(user_id=people.user.pk, type=LogType.TOPUP).count() == 1

    again = page_html(client.post("/topup", {"key": code}, headers=ENGLISH))
    assert "This redemption code has already been used." in again
    assert "hx-swap-oob" not in again
    wrong = page_html(client.post("/topup", {"key": "nope"}, headers=ENGLISH))
    assert "This redemption code is not valid." in wrong
    assert billing.search_redemptions("gift")[0].status == RedemptionStatus.USED


def test_top_up_link(people: People) -> None:
    options.set_option("TopUpLink", "https://shop.example.com")
    html = page_html(people.client("user").get("/topup"))
    assert 'href="https://shop.example.com"' in html


# --- models -----------------------------------------------------------------------------------


def test_available_models_of_the_group(people: People) -> None:
    make_channel(models="gpt-3.5-turbo,gpt-4o-mini", group="default")
    make_channel(models="vip-only", group="vip")
    client = people.client("user")
    html = page_html(client.get("/model"))
    assert "<code>gpt-4o-mini</code>" in html and "vip-only" not in html
    filtered = page_html(client.get("/model?q=MINI", headers=HTMX))
    assert filtered.lstrip().startswith('<section id="model-list"')
    assert "gpt-4o-mini" in filtered and "<code>gpt-3.5-turbo</code>" not in filtered


# --- personal settings ------------------------------------------------------------------------


def test_change_display_name_and_password_keeps_this_session(people: People) -> None:
    client = people.client("user")
    other = people.client("user")
    response = client.post(
        "/setting/profile",
        {
            "username": "alice",
            "display_name": "Alice",
            "password": "new-password-1",
            "password2": "new-password-1",
        },
        headers={**HTMX, **ENGLISH},
    )
    html = page_html(response)
    assert html.lstrip().startswith('<section id="profile"') and "Your profile is saved." in html
    people.user.refresh_from_db()
    assert people.user.display_name == "Alice" and people.user.check_password("new-password-1")
    assert client.get("/api/user/self").status_code == 200
    assert other.get("/api/user/self").status_code == 401  # the other session ended


def test_profile_errors(people: People) -> None:
    client = people.client("user")
    taken = client.post(
        "/setting/profile", {"username": "admin1", "display_name": ""}, headers={**HTMX, **ENGLISH}
    )
    assert "This username is taken." in page_html(taken)
    short = client.post(
        "/setting/profile",
        {"username": "alice", "password": "short", "password2": "short"},
        headers={**HTMX, **ENGLISH},
    )
    assert "at least 8 characters" in page_html(short)


def test_access_token_and_invitation_link(people: People) -> None:
    client = people.client("user")
    token_html = page_html(client.post("/setting/access-token", headers=HTMX))
    people.user.refresh_from_db()
    assert f"<code data-secret>{people.user.access_token}</code>" in token_html
    options.set_option("ServerAddress", "https://gw.example.com")
    link_html = page_html(client.post("/setting/invitation", headers=HTMX))
    people.user.refresh_from_db()
    assert f"https://gw.example.com/register?aff={people.user.aff_code}" in link_html


def test_bind_an_email(people: People) -> None:
    cache.clear()
    client = people.client("user")
    sent = page_html(client.post("/setting/email/code", {"email": "a@example.com"}, headers=HTMX))
    assert sent.lstrip().startswith('<section id="email-bind"')
    code = re.search(r"您的验证码为: (\w+)", mail.outbox[-1].body).group(1)
    wrong = client.post(
        "/setting/email", {"email": "a@example.com", "code": "nope"}, headers={**HTMX, **ENGLISH}
    )
    assert "The verification code is wrong or has expired." in page_html(wrong)
    auth_services.remember_code(auth_services.EMAIL_VERIFICATION, "a@example.com", code)
    client.post("/setting/email", {"email": "a@example.com", "code": code}, headers=HTMX)
    people.user.refresh_from_db()
    assert people.user.email == "a@example.com"


def test_delete_my_account(people: People) -> None:
    client = people.client("user")
    wrong = client.post("/setting/delete", {"confirm": "bob"}, headers=ENGLISH)
    assert "This is not your username." in page_html(wrong)
    done = client.post("/setting/delete", {"confirm": "alice"})
    assert done.status_code == 302 and done["Location"] == "/"
    assert not User.objects.filter(username="alice").exists()

    root = people.client("root")
    refused = root.post("/setting/delete", {"confirm": "root1"}, headers=ENGLISH)
    assert "The root account cannot be deleted." in page_html(refused)


def test_wechat_bind_needs_wechat_enabled(people: People) -> None:
    html = page_html(
        people.client("user").post("/setting/wechat", {"code": "1"}, headers={**HTMX, **ENGLISH})
    )
    assert "Sign-in with WeChat is not enabled." in html


@pytest.mark.parametrize("theme", ["default", "air"])
def test_every_console_page_renders_in_each_theme(people: People, theme: str) -> None:
    options.set_option("Theme", theme)
    consume(people.root)
    client = people.client("root")
    for path in ("/dashboard", "/token", "/token/add", "/log", "/topup", "/model", "/setting"):
        assert f'data-theme="{theme}"' in page_html(client.get(path)), path
