"""A sweep over every `/api` route: each one refuses anonymous callers unless it is public,
and none of them ever shows a channel key or another user's access token or key."""

from __future__ import annotations

import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from billing.models import ApiKey
from oneapi.api import ApiView
from tests.api.conftest import Actors
from tests.factories import make_channel

pytestmark = pytest.mark.django_db

# Routes anyone may call, as in One API (login, registration, OAuth callbacks, public pages).
PUBLIC = {
    "api/about",
    "api/notice",
    "api/home_page_content",
    "api/schema",
    "api/schema/ui",
    "api/user/login",
    "api/user/logout",
    "api/user/register",
    "api/user/reset",
    "api/verification",
    "api/reset_password",
    "api/oauth/state",
    "api/oauth/github",
    "api/oauth/lark",
    "api/oauth/wechat",
}


# GETs with effects (a new access token, a logout, upstream calls) stay out of the secrets sweep.
GETS_THAT_ACT = ("logout", "schema", "user/token", "channel/test", "update_balance", "oauth")


def api_views() -> list[tuple[str, type]]:
    found: list[tuple[str, type]] = []

    def walk(patterns: list, prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                view_class = getattr(pattern.callback, "view_class", None)
                route = prefix + str(pattern.pattern)
                if view_class is not None and route.lstrip("^").startswith("api/"):
                    found.append((route, view_class))

    walk(get_resolver().url_patterns, "")
    return found


def concrete_path(route: str, ident: int = 1) -> str:
    path = route.lstrip("^").rstrip("$")
    path = re.sub(r"\(\?P<\w+>[^)]*\)", str(ident), path)
    return "/" + path.replace("/?", "").replace("\\", "")


def route_name(route: str) -> str:
    return re.sub(r"/\(\?P<\w+>[^)]*\)", "", route.lstrip("^").rstrip("$")).replace("/?", "")


ROUTES = api_views()


def test_the_sweep_sees_the_whole_api() -> None:
    assert len(ROUTES) > 40


@pytest.mark.parametrize(("route", "view"), ROUTES, ids=[r for r, _ in ROUTES])
def test_every_route_refuses_anonymous_callers_unless_public(
    actors: Actors, route: str, view: type
) -> None:
    name = route_name(route)
    if name in PUBLIC or issubclass(view, ApiView) and view.min_role == 0:
        assert name in PUBLIC, f"{name} is public but not listed as such"
        return
    client = actors.client("anonymous")
    for method in ("get", "post", "put", "delete"):
        if not hasattr(view, method):
            continue
        response = getattr(client, method)(concrete_path(route), {}, format="json")
        assert response.status_code == 401, (method, route, response.content)
        assert response.json()["success"] is False


def test_no_route_shows_secrets_to_anyone(actors: Actors) -> None:
    channel = make_channel(key="sk-channel-secret-value")
    other_key = ApiKey.objects.create(user=actors.other, key="o" * 48, name="other's")
    secrets = [channel.key, other_key.key, actors.other.access_token]
    idents = {channel.pk, other_key.pk, actors.other.pk}
    for actor in ("user", "admin", "root"):
        client = actors.client(actor)
        for route, view in ROUTES:
            if not hasattr(view, "get") or any(word in route for word in GETS_THAT_ACT):
                continue
            for ident in idents:
                body = client.get(concrete_path(route, ident)).content.decode()
                for secret in secrets:
                    assert secret not in body, (actor, route, ident)
