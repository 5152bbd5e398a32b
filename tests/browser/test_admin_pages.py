"""The admin pages in Chromium, end to end: root generates redemption codes, copies them
all and redeems one; edits a user's quota; fixes a ratio after invalid JSON; previews a
notice. Screenshots of each page are saved as artifacts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip, or fail under REQUIRE_SERVICES=1, and say why
    expect = None

from accounts.bootstrap import ensure_root_account
from accounts.models import User, UserStatus
from billing.models import Redemption, RedemptionStatus
from oneapi.models import Option
from tests.browser.conftest import set_password, sign_in
from tests.factories import make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

Shot = Callable[[Any, str], Path]
ROOT_PASSWORD = "browser-root-2"


def root_user() -> User:
    root = ensure_root_account() or User.objects.get(username="root")
    set_password(root, ROOT_PASSWORD)
    return root


def admin_menu(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Console").get_by_role("link", name=name).click()


def at_top(page: Any) -> None:
    """Scrolled back up: a full-page picture taken scrolled shows the sticky header mid-page."""
    page.evaluate("window.scrollTo(0, 0)")


def section(page: Any, name: str) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role("link", name=name).click()


def test_root_generates_copies_and_redeems_codes(page: Any, screenshot: Shot) -> None:
    root = root_user()
    before = User.objects.get(pk=root.pk).quota
    sign_in(page, "root", ROOT_PASSWORD)
    admin_menu(page, "Redemption codes")
    expect(page).to_have_url(re.compile(r"/redemption$"))
    page.get_by_role("link", name="Generate codes").click()
    page.get_by_label("Name", exact=True).fill("browser batch")
    page.get_by_label("Number of codes").fill("3")
    page.get_by_label("Quota of each code").fill("250000")
    page.get_by_role("button", name="Generate").click()

    expect(page.locator("#new-codes")).to_contain_text("3 codes worth $0.50 each")
    keys = list(
        Redemption.objects.filter(name="browser batch").order_by("id").values_list("key", flat=True)
    )
    assert len(keys) == 3
    expect(page.locator("#new-codes-list")).to_have_text("\n".join(keys))
    page.get_by_role("button", name="Copy all codes").click()
    expect(page.get_by_role("status").filter(has_text="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.split("\n") == keys
    expect(page.locator('tr[data-code-name="browser batch"]')).to_have_count(3)
    at_top(page)
    screenshot(page, "admin-redemptions")

    # The CSV of the batch downloads.
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export as CSV").click()
    csv_text = Path(download_info.value.path()).read_text()
    assert [line.split(",")[2] for line in csv_text.strip().splitlines()[1:]] == keys

    # Disable the second code in place; delete the third after confirming.
    second = Redemption.objects.get(key=keys[1])
    row = page.locator(f"#redemption-{second.pk}")
    row.get_by_role("button", name="Disable").click()
    expect(row).to_contain_text("Disabled")
    expect(page.get_by_role("status").filter(has_text="Code disabled.")).to_be_visible()
    assert Redemption.objects.get(pk=second.pk).status == RedemptionStatus.DISABLED
    third = Redemption.objects.get(key=keys[2])
    page.locator(f"#redemption-{third.pk}").get_by_role("button", name="Delete").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Confirm").click()
    expect(page.locator(f"#redemption-{third.pk}")).to_have_count(0)
    assert not Redemption.objects.filter(pk=third.pk).exists()

    # Redeem the first code, pasted from the clipboard, on the top-up page.
    admin_menu(page, "Top up")
    page.get_by_label("Redemption code").fill(copied.split("\n")[0])
    page.get_by_role("button", name="Redeem").click()
    expect(page.locator("#redeem")).to_contain_text("Redeemed: $0.50 added to your balance.")
    assert User.objects.get(pk=root.pk).quota == before + 250_000
    assert Redemption.objects.get(key=keys[0]).status == RedemptionStatus.USED


def test_root_edits_a_users_quota_and_disables_them(page: Any, screenshot: Shot) -> None:
    root_user()
    alice = make_user(username="alice", quota=1_000_000)
    sign_in(page, "root", ROOT_PASSWORD)
    admin_menu(page, "Users")
    row = page.locator(f"#user-{alice.pk}")
    expect(row).to_contain_text("$2.00")
    # Root's own row offers no action the services would refuse (disable, demote, delete).
    own = page.locator(f"#user-{User.objects.get(username='root').pk}")
    expect(own.get_by_role("button")).to_have_count(0)
    at_top(page)
    screenshot(page, "admin-users")

    row.get_by_role("link", name="Edit").click()
    expect(page).to_have_url(re.compile(rf"/user/edit/{alice.pk}$"))
    page.get_by_label("Quota", exact=True).fill("1234567")
    at_top(page)
    screenshot(page, "admin-user-edit")
    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/user$"))
    expect(page.locator(".flash")).to_contain_text("User alice saved.")
    expect(page.locator(f"#user-{alice.pk} td[data-quota]")).to_have_attribute(
        "data-quota", "1234567"
    )
    assert User.objects.get(pk=alice.pk).quota == 1_234_567

    page.locator(f"#user-{alice.pk}").get_by_role("button", name="Disable").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_contain_text("Disable the user “alice”?")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.locator(f"#user-{alice.pk}")).to_contain_text("Disabled")
    assert User.objects.get(pk=alice.pk).status == UserStatus.DISABLED


def test_root_fixes_a_ratio_and_previews_the_notice(page: Any, screenshot: Shot) -> None:
    root_user()
    sign_in(page, "root", ROOT_PASSWORD)
    admin_menu(page, "System settings")
    expect(page.get_by_role("heading", name="Sign-in and registration")).to_be_visible()
    at_top(page)
    screenshot(page, "admin-settings-system")

    section(page, "Ratios")
    expect(page).to_have_url(re.compile(r"/setting/system/ratios$"))
    group = page.locator("#options-ratios")
    editor = group.get_by_label("Model ratios")
    editor.fill('{"gpt-4": 15,}')
    group.get_by_role("button", name="Save").click()
    expect(group.locator("#opt-ModelRatio-error")).to_contain_text("Not valid JSON")
    assert not Option.objects.filter(key="ModelRatio").exists()
    at_top(page)
    screenshot(page, "admin-settings-ratios-error")

    group = page.locator("#options-ratios")
    group.get_by_label("Model ratios").fill('{"gpt-4": 15, "browser-model": 0.25}')
    group.get_by_role("button", name="Save").click()
    expect(page.locator("#options-ratios")).to_contain_text("Settings saved.")
    stored = Option.objects.get(key="ModelRatio").value
    assert json.loads(stored) == {"gpt-4": 15, "browser-model": 0.25}

    section(page, "Operation")
    expect(page.get_by_role("heading", name="Channels and retries")).to_be_visible()
    at_top(page)
    screenshot(page, "admin-settings-operation")

    section(page, "Content")
    notice = page.locator("#options-notice")
    notice.get_by_label("Notice").fill("**Maintenance** at <script>alert(1)</script>noon")
    notice.get_by_role("button", name="Preview").click()
    expect(notice.locator("#preview-Notice strong")).to_have_text("Maintenance")
    expect(notice.locator("#preview-Notice script")).to_have_count(0)
    assert not Option.objects.filter(key="Notice").exists()  # a preview saves nothing
    at_top(page)
    screenshot(page, "admin-settings-content")
