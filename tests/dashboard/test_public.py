"""Public pages: content from the options (sanitized), the layout's options, themes, languages."""

from __future__ import annotations

import pytest
from django.test import Client

from dashboard import markup, themes
from oneapi import options
from tests.dashboard.conftest import ENGLISH, People, page_html

pytestmark = pytest.mark.django_db


def test_home_page_content_is_sanitized_markdown() -> None:
    options.set_option(
        "HomePageContent",
        "# Welcome\n\nSome **bold** text.\n\n<script>alert(1)</script>"
        '<a href="javascript:alert(2)" onclick="x()">link</a> <img src="/x.png" onerror="y()">',
    )
    html = page_html(Client().get("/"))
    assert "<h1>Welcome</h1>" in html
    assert "<strong>bold</strong>" in html
    for dangerous in ("<script>alert", "javascript:", "onclick", "onerror"):
        assert dangerous not in html
    assert '<img src="/x.png">' in html


def test_home_page_content_that_is_a_url_is_embedded() -> None:
    options.set_option("HomePageContent", "https://example.com/landing")
    html = page_html(Client().get("/"))
    assert '<iframe class="content-frame" src="https://example.com/landing"' in html
    assert "sandbox=" in html


def test_default_home_page_tells_how_to_connect() -> None:
    options.set_option("ServerAddress", "https://gw.example.com/")
    html = page_html(Client().get("/", headers=ENGLISH))
    assert "https://gw.example.com/v1" in html
    assert 'data-copy="https://gw.example.com/v1"' in html


def test_about_page_renders_the_about_option() -> None:
    options.set_option("About", "Run by *us*.")
    html = page_html(Client().get("/about"))
    assert "Run by <em>us</em>." in html


def test_layout_shows_name_logo_notice_and_footer_from_the_options() -> None:
    options.set_option("SystemName", "Acme AI")
    options.set_option("Logo", "https://cdn.example.com/logo.png")
    options.set_option("Notice", "Maintenance **tonight**")
    options.set_option("Footer", '<a href="https://acme.test">Acme</a><script>bad()</script>')
    html = page_html(Client().get("/about"))
    assert "<title>" in html and "· Acme AI</title>" in html
    assert '<img src="https://cdn.example.com/logo.png"' in html
    assert "Maintenance <strong>tonight</strong>" in html and "data-notice" in html
    assert '<a href="https://acme.test" rel="noopener noreferrer">Acme</a>' in html
    assert "bad()" not in html


def test_markup_content_kinds() -> None:
    assert markup.option_content("").empty
    assert markup.option_content("  https://a.test/x  ").iframe_url == "https://a.test/x"
    assert markup.option_content("see https://a.test/x").iframe_url == ""
    assert "<p>see" in markup.option_content("see https://a.test/x").html


def test_theme_option_selects_the_templates_and_the_stylesheet(people: People) -> None:
    client = people.client("user")
    default = page_html(client.get("/dashboard"))
    assert 'class="sidebar"' in default and "/static/dashboard/themes/default.css" in default

    options.set_option("Theme", "air")
    air = page_html(client.get("/dashboard"))
    assert 'class="airbar"' in air and 'class="sidebar"' not in air
    assert "/static/dashboard/themes/air.css" in air
    # Pages the theme does not override come from the default theme, in the air layout.
    assert 'id="usage"' in air

    # A theme without templates or stylesheet (One API's "berry") falls back to default.
    options.set_option("Theme", "berry")
    berry = page_html(client.get("/dashboard"))
    assert 'class="sidebar"' in berry and "/static/dashboard/themes/default.css" in berry


def test_theme_lookup_order() -> None:
    assert themes.template_names("base.html", "air") == [
        "themes/air/base.html",
        "themes/default/base.html",
    ]
    assert themes.template_names("base.html", "default") == ["themes/default/base.html"]
    options.set_option("Theme", "../etc")  # never a path: unknown names mean default
    assert themes.current() == "default"


def test_language_follows_the_browser_then_the_switch() -> None:
    client = Client()
    chinese = page_html(client.get("/login"))
    assert '<html lang="zh-hans"' in chinese and "忘记密码？" in chinese
    english = page_html(client.get("/login", headers=ENGLISH))
    assert '<html lang="en"' in english and "Forgot your password?" in english

    switched = client.post("/i18n/setlang/", {"language": "en", "next": "/about"})
    assert switched.status_code == 302 and switched["Location"] == "/about"
    # The cookie now wins over the browser's preference.
    html = page_html(client.get("/login", headers={"Accept-Language": "zh-CN"}))
    assert '<html lang="en"' in html and "Forgot your password?" in html


def test_service_errors_are_translated(people: People) -> None:
    client = Client()
    english = client.post("/login", {"username": "alice", "password": "wrong"}, headers=ENGLISH)
    assert "Wrong username or password, or the user is disabled." in page_html(english)
    chinese = client.post("/login", {"username": "alice", "password": "wrong"})
    assert "用户名或密码错误，或用户已被封禁。" in page_html(chinese)
