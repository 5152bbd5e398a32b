"""The console in Chromium, end to end: what a person does, with what they would see."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip, or fail under REQUIRE_SERVICES=1, and say why
    expect = None

from accounts.bootstrap import ensure_root_account
from accounts.models import User
from billing import services as billing
from billing.models import ApiKey, Log, LogType
from tests.browser.conftest import set_option_seen, set_password, sign_in
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import DaphneServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

Shot = Callable[[Any, str], Path]
ROOT_PASSWORD = "browser-root-1"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


def root_user(password: str = ROOT_PASSWORD) -> User:
    root = ensure_root_account() or User.objects.get(username="root")
    set_password(root, password)
    return root


def test_root_signs_in_and_changes_the_default_password(page: Any, screenshot: Shot) -> None:
    root_user("123456")  # what a first boot creates
    page.goto("/login")
    screenshot(page, "login")
    sign_in(page, "root", "123456")

    # Root still on the default password lands in the settings, told to change it.
    expect(page).to_have_url(re.compile(r"/setting$"))
    expect(page.get_by_text("You are using the default root password")).to_be_visible()
    profile = page.locator("#profile")
    profile.get_by_label("New password", exact=True).fill("a-new-root-password")
    profile.get_by_label("Repeat the new password", exact=True).fill("a-new-root-password")
    profile.get_by_role("button", name="Save").click()
    expect(page.locator("#profile")).to_contain_text("Your profile is saved.")
    screenshot(page, "settings")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("banner").get_by_role("link", name="Sign in")).to_be_visible()
    page.goto("/login")
    form = page.locator("main form").first
    form.get_by_label("Username or email address", exact=True).fill("root")
    form.get_by_label("Password", exact=True).fill("123456")
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")
    sign_in(page, "root", "a-new-root-password")
    expect(page).to_have_url(re.compile(r"/dashboard$"))


def test_api_key_from_the_console_serves_the_sdk_and_shows_in_logs_and_chart(
    page: Any, server: DaphneServer, upstream: FakeOpenAI, screenshot: Shot
) -> None:
    root_user()
    make_channel(base_url=upstream.base_url, models="gpt-3.5-turbo")
    sign_in(page, "root", ROOT_PASSWORD)

    page.get_by_role("navigation", name="Console").get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="New API key").click()
    page.get_by_label("Name", exact=True).fill("browser key")
    page.get_by_label("Unlimited quota").check()
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#new-key")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/token$"))  # where the redirect after the form led
    shown = page.locator("#new-key").inner_text()
    page.get_by_role("button", name="Copy the new API key").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown and re.fullmatch(r"sk-\w{48}", copied)
    assert ApiKey.objects.get(name="browser key").key == copied.removeprefix("sk-")
    screenshot(page, "tokens")

    # The key works with the official SDK once the server has loaded the new channel.
    def listed() -> bool:
        response = httpx.get(
            f"{server.base_url}/v1/models", headers={"Authorization": f"Bearer {copied}"}
        )
        return response.status_code == 200 and "gpt-3.5-turbo" in response.text

    wait_until(listed, timeout=15, what="the server to route gpt-3.5-turbo")
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=copied, max_retries=0)
    completion = client.chat.completions.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Hello from the browser"}]
    )
    assert completion.choices[0].message.content == upstream.reply
    wait_until(
        lambda: Log.objects.filter(type=LogType.CONSUME, token_name="browser key").exists(),
        timeout=15,
        what="the request's log",
    )

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Logs").click()
    row = page.locator('tr[data-log-model="gpt-3.5-turbo"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("browser key")
    expect(row).to_contain_text("Consumption")
    screenshot(page, "logs")

    # Filtering swaps only the table (HTMX) and keeps the address bar in step.
    page.get_by_label("Model", exact=True).fill("no-such-model")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#log-table")).to_contain_text("No logs match.")
    expect(page).to_have_url(re.compile(r"model_name=no-such-model"))

    page.get_by_role("navigation", name="Console").get_by_role("link", name="Dashboard").click()
    expect(page.locator('#chart-requests rect[data-model="gpt-3.5-turbo"]')).to_have_count(1)
    expect(page.locator('tr[data-model="gpt-3.5-turbo"] td').first).to_have_text("1")
    expect(page.locator("[data-period-requests]")).to_have_text("1")
    screenshot(page, "dashboard")
    page.get_by_role("link", name="30 days").click()
    expect(page).to_have_url(re.compile(r"days=30"))
    expect(page.locator("#chart-requests g.bar")).to_have_count(30)
    expect(page.locator('#chart-cost rect[data-model="gpt-3.5-turbo"]')).to_have_count(1)
    page.emulate_media(color_scheme="dark")
    screenshot(page, "dashboard-dark")


def test_redeem_a_code(page: Any, screenshot: Shot) -> None:
    root = root_user()
    [code] = billing.create_redemptions(root.pk, "browser gift", 5_000_000, 1)
    before = root.quota
    sign_in(page, "root", ROOT_PASSWORD)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Top up").click()
    page.get_by_label("Redemption code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#redeem")).to_contain_text("Redeemed: $10.00 added to your balance.")
    root.refresh_from_db()
    assert root.quota == before + 5_000_000
    # The balance in the header follows (an out-of-band swap).
    expect(page.locator("#viewer-quota")).to_have_text(f"${root.quota / 500000:,.2f}")
    screenshot(page, "topup")

    page.get_by_label("Redemption code").fill(code)
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#redeem")).to_contain_text("This redemption code has already been used.")


def test_deleting_a_key_asks_first(page: Any) -> None:
    root = root_user()
    billing.create_token(
        root.pk,
        {
            **dict.fromkeys(billing.TOKEN_EDITABLE, 0),
            "name": "doomed",
            "expired_time": -1,
            "unlimited_quota": True,
            "models": "",
            "subnet": "",
        },
    )
    sign_in(page, "root", ROOT_PASSWORD)
    page.goto("/token")
    row = page.locator('tr[data-token-name="doomed"]')
    row.get_by_role("button", name="Delete").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Delete the API key “doomed”?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(row).to_have_count(1)
    assert ApiKey.objects.filter(name="doomed").exists()

    row.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Confirm").click()
    expect(row).to_have_count(0)
    expect(page.get_by_role("status").filter(has_text="API key deleted.")).to_be_visible()
    assert not ApiKey.objects.filter(name="doomed").exists()


def test_switch_language_and_theme(page: Any, screenshot: Shot) -> None:
    root_user()
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("banner").get_by_role("link", name="Sign in")).to_be_visible()
    screenshot(page, "home-en")

    page.get_by_role("button", name="简体中文").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page.get_by_role("banner").get_by_role("link", name="登录")).to_be_visible()
    screenshot(page, "home-zh")
    # The choice sticks across pages, over the browser's English.
    page.goto("/about")
    expect(page.get_by_role("heading", name="关于")).to_be_attached()
    page.get_by_role("button", name="English").click()
    expect(page.locator("html")).to_have_attribute("lang", "en")

    def theme_served(name: str) -> Callable[[], bool]:
        return lambda: f'data-theme="{name}"' in httpx.get(page.url).text

    try:
        set_option_seen(page, "Theme", "air", theme_served("air"))
        sign_in(page, "root", ROOT_PASSWORD)
        expect(page.locator("html")).to_have_attribute("data-theme", "air")
        expect(page.locator(".airbar")).to_be_visible()
        screenshot(page, "dashboard-air")
        page.goto("/")
        screenshot(page, "home-air")
    finally:
        set_option_seen(page, "Theme", "default", theme_served("default"))


def test_every_console_page_in_a_screenshot(page: Any, screenshot: Shot) -> None:
    root = root_user()
    make_channel(models="gpt-3.5-turbo,gpt-4o-mini")
    now = int(time.time())
    for days_ago, model, quota in (
        (0, "gpt-4o-mini", 300),
        (1, "gpt-3.5-turbo", 80),
        (3, "gpt-4o-mini", 500),
    ):
        Log.objects.create(
            user_id=root.pk,
            username="root",
            type=LogType.CONSUME,
            created_at=now - days_ago * 86400,
            model_name=model,
            token_name="default",
            quota=quota,
            prompt_tokens=120,
            completion_tokens=80,
            elapsed_time=900,
        )
    sign_in(page, "root", ROOT_PASSWORD)
    for path, name in (("/model", "models"), ("/token/add", "token-form"), ("/about", "about")):
        page.goto(path)
        expect(page.locator("main")).to_be_visible()
        screenshot(page, name)
    page.goto("/dashboard")
    expect(page.locator('#chart-tokens rect[data-model="gpt-4o-mini"]')).to_have_count(2)
    screenshot(page, "dashboard-week")
