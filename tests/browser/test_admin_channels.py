"""The admin Channels page in Chromium against a live Daphne: root adds a channel through the
type-aware form (pointing at a fake OpenAI), tests it, tests every channel with results
streamed over the websocket, edits a priority in place; then a key serves the SDK through
that channel, and the logs page follows the new entries live."""

from __future__ import annotations

import re
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
from billing.models import ApiKey
from channels_mgmt.models import Ability, Channel, ChannelStatus
from oneapi import options
from tests.browser.conftest import set_password, sign_in
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import DaphneServer, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

Shot = Callable[[Any, str], Path]
PASSWORD = "channels-root-1"
PROBE_MODEL = "ui-probe-model"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


def at_rest(page: Any) -> None:
    """After a boosted navigation: the request is done and htmx has settled the new content
    (its attributes bound), so the next change event reaches htmx."""
    page.wait_for_function("!document.documentElement.classList.contains('is-loading')")
    page.wait_for_timeout(100)  # htmx settles 20 ms after the swap


def root_user() -> User:
    root = ensure_root_account() or User.objects.get(username="root")
    set_password(root, PASSWORD)
    return root


def test_root_adds_tests_and_tunes_a_channel_then_uses_it(
    page: Any, server: DaphneServer, upstream: FakeOpenAI, screenshot: Shot
) -> None:
    root = root_user()
    options.set_option("AutomaticDisableChannelEnabled", "true")
    sign_in(page, "root", PASSWORD)
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Channels").click()
    expect(page).to_have_url(re.compile(r"/channel$"))
    page.get_by_role("link", name="Add channel").click()
    expect(page).to_have_url(re.compile(r"/channel/add$"))
    at_rest(page)

    # The form follows the type.
    page.get_by_label("Type", exact=True).select_option(label="Azure (3)")
    expect(page.get_by_label("API version")).to_be_visible()
    expect(page.get_by_label("API version")).to_have_attribute("placeholder", "2024-10-21")
    page.get_by_label("Type", exact=True).select_option(label="AWS (33)")
    expect(page.get_by_label("Secret access key")).to_be_visible()
    expect(page.get_by_label("Region")).to_be_visible()
    expect(page.get_by_label("Key", exact=True)).to_have_count(0)
    page.get_by_label("Type", exact=True).select_option(label="Cloudflare (37)")
    expect(page.get_by_label("Account ID")).to_be_visible()
    page.get_by_label("Type", exact=True).select_option(label="OpenAI (1)")
    expect(page.get_by_label("Base URL")).to_have_attribute("placeholder", "https://api.openai.com")

    page.get_by_label("Name", exact=True).fill("ui channel")
    page.get_by_label("Key", exact=True).fill("sk-upstream")
    page.get_by_label("Base URL").fill(upstream.base_url)
    page.locator("#channel-type-fields").get_by_label("gpt-3.5-turbo", exact=True).check()
    page.get_by_label("Other models").fill(PROBE_MODEL)
    mapping = page.get_by_label("Model mapping")
    mapping.fill('["gpt-4"]')  # JSON, but not an object: said as you type
    expect(page.locator(".json-hint")).to_have_text("Not a JSON object of model names.")
    expect(mapping).to_have_attribute("aria-invalid", "true")
    mapping.fill('{"gpt-4": "gpt-4o"}')
    expect(page.locator(".json-hint")).to_be_hidden()
    expect(mapping).to_have_attribute("aria-invalid", "false")
    mapping.fill("{not json")
    expect(page.locator(".json-hint")).to_be_visible()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "channel-form")
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".field.has-error")).to_contain_text("Not valid JSON")
    assert not Channel.objects.filter(name="ui channel").exists()

    at_rest(page)  # the page came back with the error
    mapping = page.get_by_label("Model mapping")
    mapping.fill("")
    expect(mapping).to_have_value("")
    page.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/channel$"))
    channel = Channel.objects.get(name="ui channel")
    assert (channel.key, channel.base_url, channel.group) == (
        "sk-upstream",
        upstream.base_url,
        "default",
    )
    assert channel.model_list() == ["gpt-3.5-turbo", PROBE_MODEL]
    row = page.locator(f"#channel-{channel.pk}")
    expect(row).to_contain_text("ui channel")

    # Test one: the result shows in its row.
    row.get_by_role("button", name="Test").click()
    expect(row.locator('[data-test-result="passed"]')).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="Test passed in")).to_be_visible()

    # Test all: each row gets its result over the websocket as the run goes.
    broken = make_channel(name="broken", base_url=upstream.base_url, key="sk-wrong")
    page.reload()
    at_rest(page)
    page.get_by_role("button", name="Test all channels").click()
    run = page.locator("#channel-test-run")
    expect(run).to_contain_text("Test finished: 2 tested, 1 failed.", timeout=30_000)
    expect(
        page.locator(f"#channel-{broken.pk}-response [data-test-result='failed']")
    ).to_be_visible()
    expect(page.locator(f"#channel-{broken.pk}-status")).to_contain_text("Disabled automatically")
    expect(
        page.locator(f"#channel-{channel.pk}-response [data-test-result='passed']")
    ).to_be_visible()
    screenshot(page, "channels")
    page.emulate_media(color_scheme="dark")
    screenshot(page, "channels-dark")
    page.emulate_media(color_scheme="light")

    # Priority in place.
    priority = row.get_by_label(f"Priority of channel {channel.pk}")
    priority.fill("7")
    priority.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Channel saved.")).to_be_visible()
    wait_until(lambda: Channel.objects.get(pk=channel.pk).priority == 7, what="the priority")
    assert set(Ability.objects.filter(channel=channel).values_list("priority", flat=True)) == {7}
    broken.refresh_from_db()
    assert broken.status == ChannelStatus.AUTO_DISABLED

    # The channel serves a key through the official SDK, and the logs page follows it live.
    key = ApiKey.objects.create(user=root, key="u" * 48, name="ui key", unlimited_quota=True)
    auth = {"Authorization": f"Bearer sk-{key.key}"}
    wait_until(
        lambda: PROBE_MODEL in httpx.get(f"{server.base_url}/v1/models", headers=auth).text,
        timeout=15,
        what="the server to route the new channel",
    )
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Logs").click()
    at_rest(page)
    page.get_by_label("Follow new entries").check()
    expect(page.locator("#log-follow")).to_be_visible()
    page.wait_for_timeout(500)  # the socket opens
    client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=f"sk-{key.key}", max_retries=0)
    completion = client.chat.completions.create(
        model=PROBE_MODEL, messages=[{"role": "user", "content": "Hello from the channel page"}]
    )
    assert completion.choices[0].message.content == upstream.reply
    live_row = page.locator(f'#log-rows tr[data-log-model="{PROBE_MODEL}"]')
    expect(live_row).to_have_count(1, timeout=15_000)  # without reloading the page
    expect(live_row).to_contain_text("ui key")
    screenshot(page, "logs-follow")
