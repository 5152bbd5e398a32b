"""The relay's HTTP surface: paths, body limits, gzip, CORS and the informational routes."""

from __future__ import annotations

import gzip

import pytest
from django.test import override_settings

from billing.models import ApiKey
from oneapi import caching
from oneapi.options import set_option
from tests.relay.conftest import World
from tests.relay_harness import RelayClient

pytestmark = pytest.mark.django_db

CHAT = {"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}]}


def test_bare_paths_answer_like_v1(world: World) -> None:
    assert world.client.post("/chat/completions", CHAT).status == 200
    assert world.client.get("/models").status == 200
    assert world.upstream.last_request.path == "/v1/chat/completions"


def test_unknown_v1_path_is_invalid_url(world: World) -> None:
    result = world.client.post("/v1/nothing/here", {})
    assert result.status == 404
    assert result.json() == {
        "error": {
            "message": "Invalid URL (POST /v1/nothing/here)",
            "type": "invalid_request_error",
            "param": "",
            "code": "",
        }
    }
    assert world.client.get("/v1/chat/completions").status == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/files"),
        ("POST", "/v1/files"),
        ("GET", "/v1/files/file-1/content"),
        ("POST", "/v1/fine_tuning/jobs"),
        ("POST", "/v1/fine_tuning/jobs/ft-1/cancel"),
        ("POST", "/v1/assistants"),
        ("POST", "/v1/threads/t-1/runs"),
        ("DELETE", "/v1/models/ft-model"),
    ],
)
def test_not_implemented_routes(world: World, method: str, path: str) -> None:
    result = world.client.request(method, path)
    assert result.status == 501
    assert result.json()["error"]["code"] == "api_not_implemented"
    assert result.json()["error"]["message"] == "API not implemented"


def test_request_id_on_every_response(world: World) -> None:
    for result in (
        world.client.post("/v1/chat/completions", CHAT),
        world.client.post("/v1/nothing", {}),
        RelayClient().post("/v1/chat/completions", CHAT),
    ):
        request_id = result.headers["x-oneapi-request-id"]
        assert len(request_id) == 22 and request_id.isdigit()


@override_settings(RELAY_MAX_BODY_SIZE=2048)
def test_body_over_the_limit_is_413(world: World) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 4096}]}
    result = world.client.post("/v1/chat/completions", big)
    assert result.status == 413
    assert result.json()["error"]["code"] == "request_body_too_large"
    assert world.upstream.requests == []


@override_settings(RELAY_MAX_BODY_SIZE=2048)
def test_gzip_bomb_is_413(world: World) -> None:
    bomb = gzip.compress(b'{"model":"' + b"a" * 100_000 + b'"}')
    result = world.client.post(
        "/v1/chat/completions", body=bomb, headers={"content-encoding": "gzip"}
    )
    assert result.status == 413


def test_gzip_request_body_is_accepted(world: World) -> None:
    import orjson

    result = world.client.post(
        "/v1/chat/completions",
        body=gzip.compress(orjson.dumps(CHAT)),
        headers={"content-encoding": "gzip"},
    )
    assert result.status == 200, result.body
    assert world.upstream.last_request.json["messages"] == CHAT["messages"]


def test_broken_gzip_is_400(world: World) -> None:
    result = world.client.post(
        "/v1/chat/completions", body=b"not gzip", headers={"content-encoding": "gzip"}
    )
    assert result.status == 400


def test_cors_preflight_and_headers(world: World) -> None:
    origin = {"origin": "https://chat.example.com"}
    preflight = world.client.request(
        "OPTIONS",
        "/v1/chat/completions",
        headers={**origin, "access-control-request-headers": "authorization,content-type"},
    )
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-origin"] == "https://chat.example.com"
    assert preflight.headers["access-control-allow-headers"] == "authorization,content-type"
    assert "POST" in preflight.headers["access-control-allow-methods"]

    result = world.client.post("/v1/chat/completions", CHAT, headers=origin)
    assert result.headers["access-control-allow-origin"] == "https://chat.example.com"
    assert result.headers["access-control-allow-credentials"] == "true"


def test_models_lists_the_group_models(world: World) -> None:
    result = world.client.get("/v1/models")
    assert result.status == 200
    ids = [m["id"] for m in result.json()["data"]]
    assert ids == sorted(world.channel.model_list())
    gpt = next(m for m in result.json()["data"] if m["id"] == "gpt-3.5-turbo")
    assert gpt["owned_by"] == "openai"
    assert gpt["object"] == "model"


def test_models_of_a_key_with_a_model_list(world: World) -> None:
    ApiKey.objects.filter(pk=world.key.pk).update(models="my-model,gpt-4o-mini")
    caching.invalidate(caching.KEY, world.key.key)
    data = world.client.get("/v1/models").json()["data"]
    assert [(m["id"], m["owned_by"]) for m in data] == [
        ("gpt-4o-mini", "openai"),
        ("my-model", "custom"),
    ]


def test_retrieve_model(world: World) -> None:
    assert world.client.get("/v1/models/gpt-4o-mini").json()["id"] == "gpt-4o-mini"
    missing = world.client.get("/v1/models/not-a-model")
    assert missing.status == 200
    assert missing.json()["error"]["code"] == "model_not_found"
    assert RelayClient().get("/v1/models").status == 401


def test_dashboard_billing_of_the_key(world: World) -> None:
    world.client.post("/v1/chat/completions", CHAT)
    world.refresh()
    for prefix in ("", "/v1"):
        subscription = world.client.get(f"{prefix}/dashboard/billing/subscription").json()
        assert subscription["object"] == "billing_subscription"
        total = (world.key.remain_quota + world.key.used_quota) / 500000
        assert subscription["hard_limit_usd"] == pytest.approx(total)
        usage = world.client.get(f"{prefix}/dashboard/billing/usage").json()
        assert usage["total_usage"] == pytest.approx(world.key.used_quota / 500000 * 100)


def test_dashboard_billing_of_the_user(world: World) -> None:
    set_option("DisplayTokenStatEnabled", "false")
    set_option("DisplayInCurrencyEnabled", "false")
    world.client.post("/v1/chat/completions", CHAT)
    world.refresh()
    subscription = world.client.get("/dashboard/billing/subscription").json()
    assert subscription["hard_limit_usd"] == world.user.quota + world.user.used_quota
    usage = world.client.get("/dashboard/billing/usage").json()
    assert usage["total_usage"] == world.user.used_quota * 100
