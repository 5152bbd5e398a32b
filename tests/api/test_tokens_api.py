"""`/api/token`: a user's own API keys; nobody else's, whatever the role."""

from __future__ import annotations

import time
from typing import Any

import pytest

from accounts.models import User
from billing import services
from billing.models import ApiKey, KeyStatus
from oneapi.models import CacheEvent
from relay import auth
from tests.api.conftest import ACTORS, Actors, assert_denied

pytestmark = pytest.mark.django_db

TOKEN_FIELDS = {
    "id",
    "user_id",
    "key",
    "status",
    "name",
    "created_time",
    "accessed_time",
    "expired_time",
    "remain_quota",
    "unlimited_quota",
    "used_quota",
    "models",
    "subnet",
    "rpm_limit",
    "tpm_limit",
    "concurrency_limit",
}


def make_key(user: User, **fields: Any) -> ApiKey:
    defaults: dict[str, Any] = {
        "key": services.new_api_key(),
        "name": "key",
        "remain_quota": 1000,
        "created_time": int(time.time()),
    }
    return ApiKey.objects.create(user=user, **{**defaults, **fields})


def snapshot(key: ApiKey) -> dict[str, Any]:
    return services.token_json(ApiKey.objects.get(pk=key.pk))


# --- authorization: anonymous is refused, everyone else sees only their own keys ----------


@pytest.mark.parametrize("actor", ACTORS)
def test_list_shows_only_own_keys(actors: Actors, actor: str) -> None:
    alice_key = make_key(actors.user, name="alice key")
    response = actors.client(actor).get("/api/token/")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    data = response.json()["data"]
    if actor == "user":
        assert [item["id"] for item in data] == [alice_key.pk]
        assert set(data[0]) == TOKEN_FIELDS
        assert data[0]["key"] == alice_key.key
    else:
        assert data == []


@pytest.mark.parametrize("actor", ACTORS)
def test_search_shows_only_own_keys(actors: Actors, actor: str) -> None:
    make_key(actors.user, name="shared name")
    response = actors.client(actor).get("/api/token/search?keyword=shared")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    names = [item["name"] for item in response.json()["data"]]
    assert names == (["shared name"] if actor == "user" else [])


@pytest.mark.parametrize("actor", ACTORS)
def test_get_by_id_only_for_the_owner(actors: Actors, actor: str) -> None:
    key = make_key(actors.user)
    response = actors.client(actor).get(f"/api/token/{key.pk}")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    body = response.json()
    if actor == "user":
        assert body["data"]["key"] == key.key
    else:
        assert body == {"success": False, "message": services.TOKEN_NOT_FOUND}
        assert key.key not in response.content.decode()


@pytest.mark.parametrize("actor", ACTORS)
def test_create_makes_a_key_for_the_caller(actors: Actors, actor: str) -> None:
    response = actors.client(actor).post(
        "/api/token/", {"name": "new", "remain_quota": 500}, format="json"
    )
    if actor == "anonymous":
        assert_denied(response, actor)
        assert not ApiKey.objects.exists()
        return
    data = response.json()["data"]
    key = ApiKey.objects.get()
    assert key.user_id == getattr(actors, actor).pk
    assert data["key"] == key.key and len(key.key) == 48
    assert data["status"] == KeyStatus.ENABLED
    assert data["expired_time"] == -1
    assert data["remain_quota"] == 500


@pytest.mark.parametrize("actor", ACTORS)
def test_update_only_by_the_owner(actors: Actors, actor: str) -> None:
    key = make_key(actors.user, name="before")
    before = snapshot(key)
    body = {"id": key.pk, "name": "after", "remain_quota": 7, "expired_time": -1}
    response = actors.client(actor).put("/api/token/", body, format="json")
    if actor == "anonymous":
        assert_denied(response, actor)
    elif actor != "user":
        assert response.json() == {"success": False, "message": services.TOKEN_NOT_FOUND}
    else:
        assert response.json()["data"]["name"] == "after"
        assert snapshot(key)["remain_quota"] == 7
        return
    assert snapshot(key) == before


@pytest.mark.parametrize("actor", ACTORS)
def test_status_update_only_by_the_owner(actors: Actors, actor: str) -> None:
    key = make_key(actors.user)
    response = actors.client(actor).put(
        "/api/token/?status_only=1",
        {"id": key.pk, "status": KeyStatus.DISABLED},
        format="json",
    )
    if actor == "anonymous":
        assert_denied(response, actor)
    elif actor != "user":
        assert response.json()["message"] == services.TOKEN_NOT_FOUND
    expected = KeyStatus.DISABLED if actor == "user" else KeyStatus.ENABLED
    assert ApiKey.objects.get(pk=key.pk).status == expected


@pytest.mark.parametrize("actor", ACTORS)
def test_delete_only_by_the_owner(actors: Actors, actor: str) -> None:
    key = make_key(actors.user)
    response = actors.client(actor).delete(f"/api/token/{key.pk}")
    if actor == "anonymous":
        assert_denied(response, actor)
    elif actor != "user":
        assert response.json() == {"success": False, "message": services.TOKEN_NOT_FOUND}
    else:
        assert response.json() == {"success": True, "message": ""}
        assert not ApiKey.objects.filter(pk=key.pk).exists()
        return
    assert ApiKey.objects.filter(pk=key.pk).exists()


def test_routes_work_with_and_without_trailing_slash(actors: Actors) -> None:
    key = make_key(actors.user)
    client = actors.client("user")
    assert client.get("/api/token").json()["success"] is True
    assert client.get(f"/api/token/{key.pk}/").json()["success"] is True
    assert client.get("/api/token/search/?keyword=k").json()["success"] is True


# --- creation and validation -------------------------------------------------------------


def test_create_stores_every_field(actors: Actors) -> None:
    body = {
        "name": "scripted",
        "expired_time": 4_000_000_000,
        "remain_quota": 123,
        "unlimited_quota": True,
        "models": "gpt-4o, gpt-4o-mini,,",
        "subnet": "10.0.0.0/8, 192.168.1.7",
    }
    data = actors.client("user").post("/api/token/", body, format="json").json()["data"]
    key = ApiKey.objects.get(pk=data["id"])
    assert (key.name, key.expired_time, key.remain_quota, key.unlimited_quota) == (
        "scripted",
        4_000_000_000,
        123,
        True,
    )
    assert key.models == data["models"] == "gpt-4o,gpt-4o-mini"
    assert key.subnet == "10.0.0.0/8,192.168.1.7"
    assert key.created_time == key.accessed_time > 0


def test_thirty_characters_are_counted_not_bytes(actors: Actors) -> None:
    response = actors.client("user").post("/api/token/", {"name": "令" * 30}, format="json")
    assert response.json()["success"] is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x" * 31}, "name: 令牌名称过长"),
        ({"name": "ok", "subnet": "10.0.0.0/8,not-a-net"}, "subnet: 无效的网段：not-a-net"),
        ({"name": "ok", "subnet": "10.0.0.0/33"}, "subnet: 无效的网段：10.0.0.0/33"),
        ({"name": "ok", "expired_time": -2}, "expired_time: "),
        ({"name": "ok", "remain_quota": "lots"}, "remain_quota: "),
        ({"name": "ok", "unlimited_quota": "maybe"}, "unlimited_quota: "),
    ],
)
def test_create_validation_names_the_field(
    actors: Actors, body: dict[str, Any], message: str
) -> None:
    response = actors.client("user").post("/api/token/", body, format="json")
    result = response.json()
    assert result["success"] is False
    assert result["message"].startswith(message), result
    assert not ApiKey.objects.exists()


def test_update_validates_like_create(actors: Actors) -> None:
    key = make_key(actors.user)
    response = actors.client("user").put(
        "/api/token/", {"id": key.pk, "name": "n", "subnet": "300.1.1.1/8"}, format="json"
    )
    assert response.json()["message"] == "subnet: 无效的网段：300.1.1.1/8"
    response = actors.client("user").put("/api/token/", {"name": "n"}, format="json")
    assert response.json()["message"].startswith("id: ")


# --- updates and the status rules --------------------------------------------------------


def test_full_update_replaces_fields_and_keeps_status_and_usage(actors: Actors) -> None:
    key = make_key(actors.user, status=KeyStatus.DISABLED, used_quota=55, models="a")
    # What One API's front-end sends: the whole row, including fields it cannot change.
    body = {
        **snapshot(key),
        "name": "renamed",
        "status": KeyStatus.ENABLED,
        "used_quota": 0,
        "key": "x" * 48,
        "user_id": actors.other.pk,
        "unlimited_quota": True,
        "remain_quota": -1,
        "models": "",
        "subnet": "",
    }
    data = actors.client("user").put("/api/token/", body, format="json").json()["data"]
    stored = ApiKey.objects.get(pk=key.pk)
    assert (stored.name, stored.unlimited_quota, stored.remain_quota, stored.models) == (
        "renamed",
        True,
        -1,
        "",
    )
    assert stored.status == KeyStatus.DISABLED
    assert stored.used_quota == 55
    assert stored.key == key.key and stored.user_id == actors.user.pk
    assert data == services.token_json(stored)


def test_full_update_of_an_expired_key_accepts_any_status_in_the_body(actors: Actors) -> None:
    key = make_key(actors.user, status=KeyStatus.EXPIRED, expired_time=1)
    body = {**snapshot(key), "expired_time": -1}
    response = actors.client("user").put("/api/token/", body, format="json")
    assert response.json()["success"] is True
    assert ApiKey.objects.get(pk=key.pk).expired_time == -1


def test_status_only_changes_only_the_status(actors: Actors) -> None:
    key = make_key(actors.user, name="keep", remain_quota=10)
    response = actors.client("user").put(
        "/api/token/?status_only=true",
        {"id": key.pk, "status": KeyStatus.DISABLED, "name": "changed", "remain_quota": 99},
        format="json",
    )
    assert response.json()["data"]["status"] == KeyStatus.DISABLED
    stored = ApiKey.objects.get(pk=key.pk)
    assert (stored.status, stored.name, stored.remain_quota) == (KeyStatus.DISABLED, "keep", 10)


@pytest.mark.parametrize("status", [KeyStatus.EXPIRED, KeyStatus.EXHAUSTED, 0, 7])
def test_status_only_accepts_only_enable_or_disable(actors: Actors, status: int) -> None:
    key = make_key(actors.user)
    response = actors.client("user").put(
        "/api/token/?status_only=1", {"id": key.pk, "status": status}, format="json"
    )
    assert response.json()["message"].startswith("status: ")
    assert ApiKey.objects.get(pk=key.pk).status == KeyStatus.ENABLED


@pytest.mark.parametrize("stored_status", [KeyStatus.EXPIRED, KeyStatus.DISABLED])
def test_an_expired_key_cannot_be_enabled(actors: Actors, stored_status: int) -> None:
    key = make_key(actors.user, status=stored_status, expired_time=int(time.time()) - 10)
    response = actors.client("user").put(
        "/api/token/?status_only=1", {"id": key.pk, "status": KeyStatus.ENABLED}, format="json"
    )
    assert response.json() == {"success": False, "message": services.TOKEN_EXPIRED}
    assert ApiKey.objects.get(pk=key.pk).status == stored_status


@pytest.mark.parametrize("stored_status", [KeyStatus.EXHAUSTED, KeyStatus.DISABLED])
def test_an_exhausted_key_cannot_be_enabled(actors: Actors, stored_status: int) -> None:
    key = make_key(actors.user, status=stored_status, remain_quota=0)
    response = actors.client("user").put(
        "/api/token/?status_only=1", {"id": key.pk, "status": KeyStatus.ENABLED}, format="json"
    )
    assert response.json() == {"success": False, "message": services.TOKEN_EXHAUSTED}
    assert ApiKey.objects.get(pk=key.pk).status == stored_status


@pytest.mark.parametrize(
    "fields",
    [
        {"status": KeyStatus.EXPIRED, "expired_time": -1},
        {"status": KeyStatus.EXPIRED, "expired_time": 4_000_000_000},
        {"status": KeyStatus.EXHAUSTED, "remain_quota": 0, "unlimited_quota": True},
        {"status": KeyStatus.EXHAUSTED, "remain_quota": 10},
    ],
)
def test_a_fixed_key_can_be_enabled_again(actors: Actors, fields: dict[str, Any]) -> None:
    key = make_key(actors.user, **fields)
    response = actors.client("user").put(
        "/api/token/?status_only=1", {"id": key.pk, "status": KeyStatus.ENABLED}, format="json"
    )
    assert response.json()["data"]["status"] == KeyStatus.ENABLED


# --- paging, order and search ------------------------------------------------------------


def test_list_pages_newest_first(actors: Actors) -> None:
    keys = [make_key(actors.user, name=f"k{i}") for i in range(12)]
    client = actors.client("user")
    first = [item["id"] for item in client.get("/api/token/?p=0").json()["data"]]
    second = [item["id"] for item in client.get("/api/token/?p=1").json()["data"]]
    newest_first = [key.pk for key in reversed(keys)]
    assert first == newest_first[:10]
    assert second == newest_first[10:]
    assert client.get("/api/token/?p=2").json()["data"] == []


def test_list_orders_by_remaining_and_used_quota(actors: Actors) -> None:
    small = make_key(actors.user, remain_quota=5, used_quota=300)
    unlimited = make_key(actors.user, remain_quota=0, unlimited_quota=True, used_quota=100)
    large = make_key(actors.user, remain_quota=50, used_quota=200)
    client = actors.client("user")

    def order(value: str) -> list[int]:
        return [item["id"] for item in client.get(f"/api/token/?order={value}").json()["data"]]

    assert order("remain_quota") == [unlimited.pk, large.pk, small.pk]
    assert order("used_quota") == [small.pk, large.pk, unlimited.pk]
    assert order("bogus") == [large.pk, unlimited.pk, small.pk]


def test_search_is_a_name_prefix(actors: Actors) -> None:
    make_key(actors.user, name="prod-a")
    make_key(actors.user, name="prod-b")
    make_key(actors.user, name="dev-prod")
    make_key(actors.user, name="100%")
    client = actors.client("user")
    names = [item["name"] for item in client.get("/api/token/search?keyword=prod").json()["data"]]
    assert sorted(names) == ["prod-a", "prod-b"]
    # LIKE wildcards in the keyword are literal.
    assert client.get("/api/token/search?keyword=%25").json()["data"] == []


# --- the relay's cache -------------------------------------------------------------------


def test_every_write_drops_the_relay_cache_entry(actors: Actors) -> None:
    key = make_key(actors.user)
    client = actors.client("user")

    def cached() -> bool:
        return auth.cached_key(key.key)[0]

    auth.load_key(key.key)
    assert cached()
    client.put("/api/token/", {**snapshot(key), "name": "x"}, format="json")
    assert not cached()
    assert CacheEvent.objects.filter(kind="key", ident=key.key).exists()

    auth.load_key(key.key)
    client.put(
        "/api/token/?status_only=1", {"id": key.pk, "status": KeyStatus.DISABLED}, format="json"
    )
    assert not cached()

    auth.load_key(key.key)
    client.delete(f"/api/token/{key.pk}")
    assert not cached()
    assert auth.load_key(key.key) is None


def test_a_refused_update_writes_no_cache_event(actors: Actors) -> None:
    key = make_key(actors.user, remain_quota=0, status=KeyStatus.DISABLED)
    actors.client("user").put(
        "/api/token/?status_only=1", {"id": key.pk, "status": KeyStatus.ENABLED}, format="json"
    )
    actors.client("other").delete(f"/api/token/{key.pk}")
    assert not CacheEvent.objects.filter(ident=key.key).exists()


# --- rate limits ---------------------------------------------------------------------------


def test_rate_limits_round_trip(actors: Actors) -> None:
    client = actors.client("user")
    limits = {"rpm_limit": 60, "tpm_limit": 100_000, "concurrency_limit": 5}
    data = client.post("/api/token/", {"name": "limited", **limits}, format="json").json()["data"]
    assert {name: data[name] for name in limits} == limits
    key = ApiKey.objects.get(pk=data["id"])
    assert (key.rpm_limit, key.tpm_limit, key.concurrency_limit) == (60, 100_000, 5)
    assert client.get(f"/api/token/{key.pk}").json()["data"]["tpm_limit"] == 100_000

    changed = {**snapshot(key), "rpm_limit": 0, "concurrency_limit": 2}
    data = client.put("/api/token/", changed, format="json").json()["data"]
    assert (data["rpm_limit"], data["tpm_limit"], data["concurrency_limit"]) == (0, 100_000, 2)
    info = auth.load_key(key.key)
    assert info is not None
    assert (info.rpm_limit, info.tpm_limit, info.concurrency_limit) == (0, 100_000, 2)


def test_new_keys_are_unlimited(actors: Actors) -> None:
    data = actors.client("user").post("/api/token/", {"name": "n"}, format="json").json()["data"]
    assert (data["rpm_limit"], data["tpm_limit"], data["concurrency_limit"]) == (0, 0, 0)


def test_an_update_without_the_limits_keeps_them(actors: Actors) -> None:
    """A front-end that predates the fields sends rows without them."""
    key = make_key(actors.user, rpm_limit=10, tpm_limit=20, concurrency_limit=3)
    body = {k: v for k, v in snapshot(key).items() if not k.endswith("_limit")}
    actors.client("user").put("/api/token/", {**body, "name": "renamed"}, format="json")
    stored = ApiKey.objects.get(pk=key.pk)
    assert (stored.name, stored.rpm_limit, stored.tpm_limit, stored.concurrency_limit) == (
        "renamed",
        10,
        20,
        3,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("rpm_limit", -1), ("tpm_limit", 2**31), ("concurrency_limit", "many")],
)
def test_rate_limits_are_validated(actors: Actors, field: str, value: object) -> None:
    body = {"name": "n", field: value}
    result = actors.client("user").post("/api/token/", body, format="json").json()
    assert result["success"] is False
    assert result["message"].startswith(f"{field}: ")
