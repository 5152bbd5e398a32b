"""Every page for every role, as a full page and as an HTMX fragment; the URL map."""

from __future__ import annotations

import pytest
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import translation

from accounts.models import Role, User, UserStatus
from dashboard import access
from dashboard.urls import urlpatterns
from relay.routes import is_relay_path
from tests.dashboard.conftest import HTMX, ROLES, People, page_html

PUBLIC = ["/", "/about", "/login", "/register", "/reset", "/user/reset?email=a@b.test&token=x"]
# (path, the id of the part an HTMX request gets back, or None: no fragment, always the page)
CONSOLE = [
    ("/dashboard", "usage"),
    ("/token", "token-table"),
    ("/token/add", None),
    ("/log", "log-table"),
    ("/topup", "redeem"),
    ("/model", "model-list"),
    ("/setting", None),
    ("/setting/delete", None),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", PUBLIC)
def test_public_pages_answer_everyone(people: People, role: str, path: str) -> None:
    client = people.client(role)
    response = client.get(path)
    if role != "anonymous" and path == "/login":
        assert response.status_code == 302 and response["Location"] == "/dashboard"
        return
    html = page_html(response)
    assert html.startswith("<!doctype html>")
    assert 'id="main"' in html
    # Boosted navigation gets the whole page too.
    boosted = client.get(path, headers={**HTMX, "HX-Boosted": "true"})
    assert page_html(boosted).startswith("<!doctype html>")


@pytest.mark.parametrize("path", [path for path, _ in CONSOLE])
def test_console_pages_send_anonymous_visitors_to_login(people: People, path: str) -> None:
    client = Client()
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login?next={path.replace('/', '%2F')}"
    # An HTMX request must not swap the login page into a table: it is told to go there.
    fragment = client.get(path, headers=HTMX)
    assert fragment.status_code == 200
    assert fragment["HX-Redirect"].startswith("/login?next=")


@pytest.mark.parametrize("role", ["user", "admin", "root"])
@pytest.mark.parametrize(("path", "fragment_id"), CONSOLE)
def test_console_pages_full_and_fragment(
    people: People, role: str, path: str, fragment_id: str | None
) -> None:
    client = people.client(role)
    full = page_html(client.get(path))
    assert full.startswith("<!doctype html>")
    assert 'aria-label="Console"' in full or 'aria-label="控制台"' in full
    part = client.get(path, headers=HTMX)
    assert "HX-Request" in part["Vary"]
    html = page_html(part)
    if fragment_id is None:
        assert html.startswith("<!doctype html>")
    else:
        assert not html.startswith("<!doctype html>")
        assert f'id="{fragment_id}"' in html.split(">", 1)[0] + ">"
    # htmx's history restore (back button after a cache miss) needs the whole page.
    restore = client.get(path, headers={**HTMX, "HX-History-Restore-Request": "true"})
    assert page_html(restore).startswith("<!doctype html>")


def test_admin_entries_of_the_menu_appear_only_with_their_pages(people: People) -> None:
    html = page_html(people.client("root").get("/dashboard"))
    assert 'href="/channel"' in html  # listed once the Channels page exists
    user_html = page_html(people.client("user").get("/dashboard"))
    assert "Administration" not in user_html and "管理</p>" not in user_html
    assert 'href="/channel"' not in user_html


def test_role_required_answers_lower_roles_with_the_themed_403(people: People) -> None:
    @access.role_required(Role.ADMIN)
    def admin_page(request: HttpRequest) -> HttpResponse:
        return HttpResponse("admin only")

    def call(user: User) -> HttpResponse:
        request = RequestFactory().get("/somewhere")
        request.user, request.session, request.htmx = user, {}, False
        with translation.override("en"):
            response = admin_page(request)
            return response.render() if isinstance(response, TemplateResponse) else response

    denied = call(people.user)
    assert denied.status_code == 403
    assert "You may not open this page" in denied.content.decode()
    assert call(people.admin).content == b"admin only"
    assert call(people.root).content == b"admin only"


def test_disabled_user_is_signed_out(people: People) -> None:
    client = people.client("user")
    people.user.status = UserStatus.DISABLED
    people.user.save(update_fields=["status"])
    response = client.get("/dashboard")
    assert response.status_code == 302 and response["Location"].startswith("/login")
    assert client.get("/api/user/self").status_code == 401


def test_the_session_is_the_api_session(people: People) -> None:
    client = people.client("user")
    body = client.get("/api/user/self").json()
    assert body["success"] is True and body["data"]["username"] == "alice"


def test_forms_carry_the_csrf_token_for_htmx(people: People) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(people.user)
    html = page_html(client.get("/token"))
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    # Without the token a state change is refused.
    key = people.user.keys.create(key="k" * 48, name="k")
    assert client.post(f"/token/{key.pk}/delete").status_code == 403
    token = client.cookies["csrftoken"].value
    assert client.post(f"/token/{key.pk}/delete", headers={"X-CSRFToken": token}).status_code == 302


def _paths(patterns: list, prefix: str = "") -> list[str]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
        if isinstance(pattern, URLResolver):
            found += _paths(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            found.append("/" + route.replace("<int:token_id>", "1").replace("(?P<path>.+)", "x"))
    return found


def test_no_page_is_a_relay_path_and_api_stays_last() -> None:
    paths = _paths(urlpatterns)
    assert "/token" in paths and "/dashboard" in paths and "/static/x" in paths
    assert [path for path in paths if is_relay_path(path)] == []
    # The `/api` catch-all still answers unknown /api paths with One API's body.
    assert resolve("/api/nothing-here").func.__name__ == "api_not_found"
    last = get_resolver().url_patterns[-1]
    assert "api" in str(last.pattern)


def test_static_assets_come_from_the_packages(people: People) -> None:
    client = Client()
    html = page_html(client.get("/"))
    assert '<script src="/static/django_htmx/htmx-2.min.js" defer></script>' in html
    assert "/static/dashboard/console.css" in html and "/static/dashboard/console.js" in html
    for path in (
        "/static/django_htmx/htmx-2.min.js",
        "/static/dashboard/console.css",
        "/static/dashboard/console.js",
        "/static/dashboard/themes/default.css",
        "/static/dashboard/themes/air.css",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "max-age" in response["Cache-Control"]
        b"".join(response.streaming_content)
    assert client.get("/static/../oneapi/settings.py").status_code == 404
    assert client.get("/static/dashboard/missing.css").status_code == 404
