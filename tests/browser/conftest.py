"""A real browser against a real server: Playwright drives Debian's Chromium (never a
downloaded browser) against a live Daphne serving the test database.

Without `/usr/bin/chromium` (or the `playwright` package) these tests skip, visibly; with
REQUIRE_SERVICES=1, as CI sets, they fail instead. Screenshots of the main pages are saved
under `DATA_DIR/screenshots/` as test artifacts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.cache import cache

from accounts.models import User
from oneapi import options
from tests.conftest import REQUIRE_SERVICES
from tests.integration.relay_setup import DaphneServer, start_daphne

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


def require_browser() -> None:
    missing = []
    if not Path(CHROMIUM).is_file():
        missing.append(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package is not installed")
    if missing:
        message = "; ".join(missing)
        if REQUIRE_SERVICES:
            pytest.fail(message + " (REQUIRE_SERVICES=1)")
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which Django takes
    # for an async context; the database calls of the tests themselves are synchronous.
    # Module scope: that loop must be gone before later modules call asyncio.run().
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture(scope="module")
def server(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DaphneServer]:
    """One Daphne for a module, on the test database, with a data directory of its own."""
    require_browser()
    with django_db_blocker.unblock():
        # The server itself must keep Django's async-safety checks.
        daphne = start_daphne(tmp_path_factory.mktemp("browser-daphne"), **{ASYNC_UNSAFE: ""})
    try:
        yield daphne
    finally:
        with django_db_blocker.unblock():
            daphne.retire()


@pytest.fixture
def page(browser: Any, server: DaphneServer, transactional_db: None) -> Iterator[Any]:
    """A fresh browser context (cookies, storage) per test, English unless a test switches."""
    cache.clear()  # login rate-limit counts (shared with the server when Redis is the cache)
    context = browser.new_context(
        base_url=server.base_url,
        locale="en-US",
        viewport={"width": 1280, "height": 860},
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def screenshot() -> Callable[[Any, str], Path]:
    directory = Path(settings.DATA_DIR) / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = directory / f"{name}.png"
        # After the loading bar has faded: the picture shows the page at rest.
        page.wait_for_function("!document.documentElement.classList.contains('is-loading')")
        page.wait_for_timeout(300)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def set_password(user: User, password: str) -> None:
    """A hash the server can check: the test settings hash with MD5, which the server's
    (production) settings do not accept."""
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode(password, hasher.salt())
    user.save(update_fields=["password"])


def sign_in(page: Any, username: str, password: str) -> None:
    page.goto("/login")
    form = page.locator("main form").first
    form.get_by_label("Username or email address", exact=True).fill(username)
    form.get_by_label("Password", exact=True).fill(password)
    form.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def set_option_seen(page: Any, key: str, value: str, seen: Callable[[], bool]) -> None:
    """Change an option and wait until the server (another process) serves the change."""
    options.set_option(key, value)
    deadline = time.monotonic() + 15
    while not seen():
        if time.monotonic() > deadline:
            raise AssertionError(f"the server did not pick up {key}={value!r}")
        time.sleep(0.2)
