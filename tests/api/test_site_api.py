from __future__ import annotations

import json

import pytest
from django.test import override_settings

from accounts.models import Role, UserStatus
from oneapi import options
from oneapi.api import INVALID_ACCESS_TOKEN, USER_BANNED
from oneapi.models import Option
from tests.api.conftest import ACTORS, Actors, assert_denied

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("/api/notice", "Notice"),
        ("/api/about", "About"),
        ("/api/home_page_content", "HomePageContent"),
    ],
)
def test_public_pages_answer_everyone(actors: Actors, actor: str, path: str, key: str) -> None:
    options.set_option(key, f"# {key}")
    response = actors.client(actor).get(path)
    assert response.json() == {"success": True, "message": "", "data": f"# {key}"}


@pytest.mark.parametrize("actor", ACTORS)
def test_option_list_is_root_only_and_hides_secrets(actors: Actors, actor: str) -> None:
    options.set_option("GitHubClientSecret", "very-secret")
    response = actors.client(actor).get("/api/option/")
    if actors.rank(actor) < Role.ROOT:
        assert_denied(response, actor)
        return
    data = response.json()["data"]
    keys = {item["key"] for item in data}
    assert "SystemName" in keys
    assert not any(k.endswith(("Token", "Secret")) for k in keys)
    assert "very-secret" not in response.content.decode()


@pytest.mark.parametrize("actor", ACTORS)
def test_option_update_is_root_only(actors: Actors, actor: str) -> None:
    response = actors.client(actor).put(
        "/api/option/", {"key": "SystemName", "value": "Gateway"}, format="json"
    )
    if actors.rank(actor) < Role.ROOT:
        assert_denied(response, actor)
        assert not Option.objects.filter(key="SystemName").exists()
        return
    assert response.json()["success"] is True
    assert options.get_str("SystemName") == "Gateway"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("Theme", "dark", "无效的主题"),
        ("GitHubOAuthEnabled", "true", "无法启用 GitHub OAuth"),
        ("WeChatAuthEnabled", "true", "无法启用微信登录"),
        ("TurnstileCheckEnabled", "true", "无法启用 Turnstile 校验"),
        ("NoSuchOption", "x", "key: 未知的配置项"),
        ("RetryTimes", "three", "RetryTimes: 必须是数字"),
        ("LogConsumeEnabled", "yes", "LogConsumeEnabled: 必须是 true 或 false"),
        ("ModelRatio", "{not json", "ModelRatio: 不是合法的 JSON"),
        ("GroupRatio", json.dumps({"vip": "two"}), "GroupRatio: 必须是名称到数字的 JSON 对象"),
    ],
)
def test_option_validation(actors: Actors, key: str, value: str, message: str) -> None:
    response = actors.client("root").put(
        "/api/option/", {"key": key, "value": value}, format="json"
    )
    body = response.json()
    assert body["success"] is False
    assert body["message"].startswith(message)
    assert not Option.objects.filter(key=key).exists()


def test_option_values_may_be_json_booleans_and_numbers(actors: Actors) -> None:
    client = actors.client("root")
    assert client.put(
        "/api/option/", {"key": "LogConsumeEnabled", "value": False}, format="json"
    ).json()["success"]
    assert client.put("/api/option/", {"key": "RetryTimes", "value": 2}, format="json").json()[
        "success"
    ]
    assert options.get_bool("LogConsumeEnabled") is False
    assert options.get_int("RetryTimes") == 2


def test_enabling_github_after_setting_its_client_id(actors: Actors) -> None:
    client = actors.client("root")
    client.put("/api/option/", {"key": "GitHubClientId", "value": "abc"}, format="json")
    response = client.put(
        "/api/option/", {"key": "GitHubOAuthEnabled", "value": "true"}, format="json"
    )
    assert response.json()["success"] is True


def test_bad_json_body_is_400(actors: Actors) -> None:
    response = actors.client("root").generic(
        "PUT", "/api/option/", "{broken", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["success"] is False


@pytest.mark.parametrize("actor", ACTORS)
def test_groups_are_for_admins(actors: Actors, actor: str) -> None:
    response = actors.client(actor).get("/api/group/")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    assert response.json()["data"] == ["default", "vip", "svip"]


@pytest.mark.parametrize("actor", ACTORS)
def test_model_table_is_for_users(actors: Actors, actor: str) -> None:
    response = actors.client(actor).get("/api/models")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    data = response.json()["data"]
    assert "gpt-4o-mini" in data["1"]
    assert any(m.startswith("claude") for m in data["14"])


def test_session_cookie_works_like_the_access_token(actors: Actors) -> None:
    response = actors.session_client("admin").get("/api/group/")
    assert response.json()["success"] is True


def test_bearer_prefix_is_optional_and_bad_tokens_are_refused(actors: Actors) -> None:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {actors.admin.access_token}")
    assert client.get("/api/group/").json()["success"] is True
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    response = client.get("/api/group/")
    assert response.status_code == 200
    assert response.json() == {"success": False, "message": INVALID_ACCESS_TOKEN}


def test_disabled_user_is_banned(actors: Actors) -> None:
    type(actors.admin).objects.filter(pk=actors.admin.pk).update(status=UserStatus.DISABLED)
    response = actors.client("admin").get("/api/group/")
    assert response.json() == {"success": False, "message": USER_BANNED}


def test_unknown_api_path_is_invalid_url(actors: Actors) -> None:
    response = actors.client("root").post("/api/nothing/here", {}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /api/nothing/here)"


@override_settings(GLOBAL_API_RATE_LIMIT=3)
def test_global_rate_limit_answers_429_with_no_body(actors: Actors) -> None:
    client = actors.client("anonymous")
    statuses = [client.get("/api/notice").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert client.get("/api/notice").content == b""


def test_openapi_schema_lists_the_api_routes(actors: Actors) -> None:
    response = actors.client("anonymous").get("/api/schema?format=json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for route in ("/api/token/", "/api/channel/", "/api/user/self", "/api/option/", "/api/log/"):
        assert any(p.rstrip("/") == route.rstrip("/") for p in paths), route
    assert not any(p.startswith("/v1") for p in paths)
    assert {"sessionCookie", "accessToken"} <= set(schema["components"]["securitySchemes"])


def test_schema_page_uses_local_assets(actors: Actors) -> None:
    response = actors.client("anonymous").get("/api/schema/ui")
    assert response.status_code == 200
    page = response.content.decode()
    assert "swagger-ui" in page
    assert "cdn.jsdelivr.net" not in page


def test_nul_characters_are_refused_before_any_query(actors: Actors) -> None:
    """PostgreSQL refuses NUL in text: such input is a 4xx here, never a database error."""
    from rest_framework.test import APIClient

    login = APIClient().post(
        "/api/user/login", {"username": "\x00", "password": "x"}, format="json"
    )
    assert login.json()["success"] is False  # login answers One API's 200 "无效的参数"
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer \x00")
    assert client.get("/api/group/").json() == {"success": False, "message": INVALID_ACCESS_TOKEN}
    search = actors.client("admin").get("/api/user/search", {"keyword": "a\x00b"})
    assert search.status_code == 400 and search.json()["success"] is False
