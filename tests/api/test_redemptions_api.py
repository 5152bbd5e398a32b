"""`/api/redemption` (admin), redeeming a code (`/api/user/topup`) and `/api/topup`."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from accounts.models import Role, User
from billing import services
from billing.models import ApiKey, Log, LogType, Redemption, RedemptionStatus
from oneapi import options
from oneapi.models import CacheEvent
from relay import auth
from tests.api.conftest import ACTORS, Actors, assert_denied

pytestmark = pytest.mark.django_db

ALICE = object()  # stands for alice's id in parameters, which exist before the database
REDEMPTION_FIELDS = {
    "id",
    "user_id",
    "key",
    "status",
    "name",
    "quota",
    "created_time",
    "redeemed_time",
    "redeemed_by",
}


def make_code(actors: Actors, **fields: Any) -> Redemption:
    defaults: dict[str, Any] = {
        "user": actors.admin,
        "key": services.new_redemption_code(),
        "name": "batch",
        "quota": 5000,
        "created_time": 1_700_000_000,
    }
    return Redemption.objects.create(**{**defaults, **fields})


def rows() -> list[tuple[Any, ...]]:
    return list(Redemption.objects.order_by("id").values_list())


def quota_of(user: User) -> int:
    return User.objects.get(pk=user.pk).quota


# --- authorization: admins only ----------------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_list_is_for_admins(actors: Actors, actor: str) -> None:
    code = make_code(actors)
    response = actors.client(actor).get("/api/redemption/")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert code.key not in response.content.decode()
        return
    data = response.json()["data"]
    assert [item["key"] for item in data] == [code.key]
    assert set(data[0]) == REDEMPTION_FIELDS


@pytest.mark.parametrize("actor", ACTORS)
def test_search_is_for_admins(actors: Actors, actor: str) -> None:
    code = make_code(actors)
    response = actors.client(actor).get("/api/redemption/search?keyword=bat")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    assert [item["id"] for item in response.json()["data"]] == [code.pk]


@pytest.mark.parametrize("actor", ACTORS)
def test_get_is_for_admins(actors: Actors, actor: str) -> None:
    code = make_code(actors)
    response = actors.client(actor).get(f"/api/redemption/{code.pk}")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert code.key not in response.content.decode()
        return
    assert response.json()["data"] == services.redemption_json(code)


@pytest.mark.parametrize("actor", ACTORS)
def test_create_is_for_admins(actors: Actors, actor: str) -> None:
    response = actors.client(actor).post(
        "/api/redemption/", {"name": "promo", "quota": 100_000, "count": 3}, format="json"
    )
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert not Redemption.objects.exists()
        return
    keys = response.json()["data"]
    assert len(keys) == 3 and all(len(key) == 32 for key in keys)
    stored = Redemption.objects.filter(key__in=keys)
    assert stored.count() == 3
    creator = getattr(actors, actor)
    assert {(c.user_id, c.name, c.quota, c.status) for c in stored} == {
        (creator.pk, "promo", 100_000, RedemptionStatus.ENABLED)
    }
    assert all(c.created_time > 0 for c in stored)


@pytest.mark.parametrize("actor", ACTORS)
def test_update_is_for_admins(actors: Actors, actor: str) -> None:
    code = make_code(actors)
    before = rows()
    response = actors.client(actor).put(
        "/api/redemption/", {"id": code.pk, "name": "renamed", "quota": 1}, format="json"
    )
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert rows() == before
        return
    assert response.json()["data"]["name"] == "renamed"
    assert Redemption.objects.get(pk=code.pk).quota == 1


@pytest.mark.parametrize("actor", ACTORS)
def test_status_update_is_for_admins(actors: Actors, actor: str) -> None:
    code = make_code(actors)
    response = actors.client(actor).put(
        "/api/redemption/?status_only=1",
        {"id": code.pk, "status": RedemptionStatus.DISABLED},
        format="json",
    )
    expected = RedemptionStatus.ENABLED
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
    else:
        expected = RedemptionStatus.DISABLED
        assert response.json()["data"]["status"] == expected
    assert Redemption.objects.get(pk=code.pk).status == expected


@pytest.mark.parametrize("actor", ACTORS)
def test_delete_is_for_admins(actors: Actors, actor: str) -> None:
    code = make_code(actors)
    response = actors.client(actor).delete(f"/api/redemption/{code.pk}")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert Redemption.objects.filter(pk=code.pk).exists()
        return
    assert response.json() == {"success": True, "message": ""}
    assert not Redemption.objects.filter(pk=code.pk).exists()


@pytest.mark.parametrize("actor", ACTORS)
def test_export_is_for_admins(actors: Actors, actor: str) -> None:
    code = make_code(actors)
    response = actors.client(actor).get("/api/redemption/export?name=batch")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert code.key not in response.content.decode()
        return
    assert response.status_code == 200
    assert code.key in response.content.decode()


# --- creation, paging, search ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"quota": 1, "count": 1}, "name: 兑换码名称长度必须在1-20之间"),
        ({"name": "", "quota": 1, "count": 1}, "name: 兑换码名称长度必须在1-20之间"),
        ({"name": "x" * 21, "quota": 1, "count": 1}, "name: 兑换码名称长度必须在1-20之间"),
        ({"name": "ok", "quota": 1, "count": 0}, "count: 兑换码个数必须大于0"),
        ({"name": "ok", "quota": 1}, "count: 兑换码个数必须大于0"),
        ({"name": "ok", "quota": 1, "count": 101}, "count: 一次兑换码批量生成的个数不能大于 100"),
        ({"name": "ok", "quota": -5, "count": 1}, "quota: "),
        ({"name": "ok", "quota": "many", "count": 1}, "quota: "),
    ],
)
def test_create_validation(actors: Actors, body: dict[str, Any], message: str) -> None:
    response = actors.client("admin").post("/api/redemption/", body, format="json")
    result = response.json()
    assert result["success"] is False
    assert result["message"].startswith(message), result
    assert not Redemption.objects.exists()


def test_create_limits_are_inclusive(actors: Actors) -> None:
    client = actors.client("admin")
    body = {"name": "码" * 20, "quota": 0, "count": 100}
    assert len(client.post("/api/redemption/", body, format="json").json()["data"]) == 100
    assert Redemption.objects.filter(name="码" * 20).count() == 100


def test_list_pages_newest_first(actors: Actors) -> None:
    codes = [make_code(actors) for _ in range(11)]
    client = actors.client("admin")
    first = [item["id"] for item in client.get("/api/redemption/?p=0").json()["data"]]
    second = [item["id"] for item in client.get("/api/redemption/?p=1").json()["data"]]
    assert first == [code.pk for code in reversed(codes)][:10]
    assert second == [codes[0].pk]


def test_search_matches_id_or_name_prefix(actors: Actors) -> None:
    spring = make_code(actors, name="spring")
    summer = make_code(actors, name="summer")
    make_code(actors, name="autumn-spring")
    client = actors.client("admin")

    def found(keyword: str) -> set[int]:
        response = client.get(f"/api/redemption/search?keyword={keyword}")
        return {item["id"] for item in response.json()["data"]}

    assert found("s") == {spring.pk, summer.pk}
    assert found("spr") == {spring.pk}
    assert found(str(summer.pk)) == {summer.pk}
    assert found("nothing") == set()


def test_missing_codes(actors: Actors) -> None:
    client = actors.client("admin")
    missing = {"success": False, "message": services.REDEMPTION_NOT_FOUND}
    assert client.get("/api/redemption/999").json() == missing
    assert client.delete("/api/redemption/999").json() == missing
    body = {"id": 999, "name": "x", "quota": 1}
    assert client.put("/api/redemption/", body, format="json").json() == missing
    body = {"id": 999, "status": 2}
    assert client.put("/api/redemption/?status_only=1", body, format="json").json() == missing


# --- updates -----------------------------------------------------------------------------


def test_full_update_changes_name_and_quota_only(actors: Actors) -> None:
    code = make_code(actors, status=RedemptionStatus.DISABLED)
    body = {**services.redemption_json(code), "name": "new", "quota": 42, "status": 1, "key": "x"}
    data = actors.client("admin").put("/api/redemption/", body, format="json").json()["data"]
    stored = Redemption.objects.get(pk=code.pk)
    assert (stored.name, stored.quota, stored.status, stored.key) == (
        "new",
        42,
        RedemptionStatus.DISABLED,
        code.key,
    )
    assert data == services.redemption_json(stored)


def test_full_update_validates_the_name(actors: Actors) -> None:
    code = make_code(actors)
    response = actors.client("admin").put(
        "/api/redemption/", {"id": code.pk, "name": "", "quota": 1}, format="json"
    )
    assert response.json()["message"] == "name: 兑换码名称长度必须在1-20之间"


def test_status_only_enables_and_disables_but_never_reopens_a_used_code(actors: Actors) -> None:
    client = actors.client("admin")
    code = make_code(actors)
    for status in (RedemptionStatus.DISABLED, RedemptionStatus.ENABLED):
        body = {"id": code.pk, "status": status, "name": "ignored"}
        data = client.put("/api/redemption/?status_only=1", body, format="json").json()["data"]
        assert (data["status"], data["name"]) == (status, "batch")

    used = make_code(actors, status=RedemptionStatus.USED, redeemed_by=actors.user.pk)
    body = {"id": used.pk, "status": RedemptionStatus.ENABLED}
    response = client.put("/api/redemption/?status_only=1", body, format="json")
    assert response.json() == {"success": False, "message": services.REDEMPTION_USED}
    assert Redemption.objects.get(pk=used.pk).status == RedemptionStatus.USED

    body = {"id": code.pk, "status": RedemptionStatus.USED}
    response = client.put("/api/redemption/?status_only=1", body, format="json")
    assert response.json()["message"].startswith("status: ")


# --- export ------------------------------------------------------------------------------


def test_export_is_the_batch_as_csv(actors: Actors) -> None:
    first = make_code(actors, name="团队 A", quota=10)
    second = make_code(actors, name="团队 A", quota=10, status=RedemptionStatus.USED)
    make_code(actors, name="团队 AB")
    response = actors.client("admin").get("/api/redemption/export?name=团队 A")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith("attachment;")
    table = list(csv.reader(io.StringIO(response.content.decode())))
    assert table == [
        ["id", "name", "key", "quota", "status", "created_time"],
        [str(first.pk), "团队 A", first.key, "10", "1", "1700000000"],
        [str(second.pk), "团队 A", second.key, "10", "3", "1700000000"],
    ]


def test_export_of_an_unknown_batch_is_an_error(actors: Actors) -> None:
    client = actors.client("admin")
    assert client.get("/api/redemption/export?name=none").json() == {
        "success": False,
        "message": services.REDEMPTION_NOT_FOUND,
    }
    assert client.get("/api/redemption/export").json()["message"].startswith("name: ")


# --- redeeming (`POST /api/user/topup`) --------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_any_user_may_redeem(actors: Actors, actor: str) -> None:
    code = make_code(actors, quota=2500)
    response = actors.client(actor).post("/api/user/topup", {"key": code.key}, format="json")
    if actor == "anonymous":
        assert_denied(response, actor)
        assert Redemption.objects.get(pk=code.pk).status == RedemptionStatus.ENABLED
        assert not Log.objects.exists()
        return
    caller = getattr(actors, actor)
    assert response.json() == {"success": True, "message": "", "data": 2500}
    assert quota_of(caller) == caller.quota + 2500


def test_redeem_marks_the_code_logs_and_invalidates(actors: Actors) -> None:
    options.set_option("DisplayInCurrencyEnabled", "false")
    code = make_code(actors, quota=2500)
    alice = actors.user
    relay_key = ApiKey.objects.create(user=alice, key="r" * 48, name="k", remain_quota=1)
    auth.load_key(relay_key.key)  # fills the relay's user cache with alice's old quota
    assert auth.cached_user(alice.pk) is not None
    data = actors.client("user").post("/api/user/topup", {"key": code.key}, format="json").json()
    assert data["data"] == 2500
    stored = Redemption.objects.get(pk=code.pk)
    assert stored.status == RedemptionStatus.USED
    assert stored.redeemed_by == alice.pk
    assert stored.redeemed_time > 0
    log = Log.objects.get()
    assert (log.user_id, log.username, log.type, log.content, log.quota) == (
        alice.pk,
        "alice",
        LogType.TOPUP,
        "通过兑换码充值 2500 点额度",
        2500,
    )
    assert CacheEvent.objects.filter(kind="user", ident=str(alice.pk)).exists()
    assert auth.cached_user(alice.pk) is None
    assert quota_of(actors.other) == actors.other.quota


def test_a_code_is_redeemed_once(actors: Actors) -> None:
    code = make_code(actors, quota=2500)
    assert (
        actors.client("user")
        .post("/api/user/topup", {"key": code.key}, format="json")
        .json()["success"]
    )
    for actor in ("user", "other"):
        response = actors.client(actor).post("/api/user/topup", {"key": code.key}, format="json")
        assert response.json() == {"success": False, "message": services.USED_REDEMPTION_KEY}
    assert quota_of(actors.user) == actors.user.quota + 2500
    assert quota_of(actors.other) == actors.other.quota
    assert Log.objects.count() == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("0" * 32, services.INVALID_REDEMPTION_KEY),
        ("", services.NO_REDEMPTION_KEY),
        (None, services.NO_REDEMPTION_KEY),
    ],
)
def test_unknown_or_missing_codes(actors: Actors, key: str | None, message: str) -> None:
    body = {} if key is None else {"key": key}
    response = actors.client("user").post("/api/user/topup", body, format="json")
    assert response.json() == {"success": False, "message": message}
    assert quota_of(actors.user) == actors.user.quota


def test_a_disabled_code_cannot_be_redeemed(actors: Actors) -> None:
    code = make_code(actors, status=RedemptionStatus.DISABLED)
    response = actors.client("user").post("/api/user/topup", {"key": code.key}, format="json")
    assert response.json()["message"] == services.USED_REDEMPTION_KEY
    assert Redemption.objects.get(pk=code.pk).status == RedemptionStatus.DISABLED
    assert quota_of(actors.user) == actors.user.quota


def test_a_failed_log_write_rolls_the_redemption_back(
    actors: Actors, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = make_code(actors)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("log database down")

    monkeypatch.setattr(services, "_topup_log", broken)
    with pytest.raises(RuntimeError):
        services.redeem(actors.user, code.key)
    assert Redemption.objects.get(pk=code.pk).status == RedemptionStatus.ENABLED
    assert quota_of(actors.user) == actors.user.quota
    assert not CacheEvent.objects.filter(kind="user").exists()


# --- admin top-up (`POST /api/topup`) ----------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_admin_top_up_is_for_admins(actors: Actors, actor: str) -> None:
    alice = actors.user
    response = actors.client(actor).post(
        "/api/topup", {"user_id": alice.pk, "quota": 7000, "remark": "订单 42"}, format="json"
    )
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert quota_of(alice) == alice.quota
        assert not Log.objects.exists()
        return
    assert response.json() == {"success": True, "message": ""}
    assert quota_of(alice) == alice.quota + 7000
    log = Log.objects.get()
    assert (log.user_id, log.username, log.type, log.content, log.quota) == (
        alice.pk,
        "alice",
        LogType.TOPUP,
        "订单 42",
        7000,
    )
    assert CacheEvent.objects.filter(kind="user", ident=str(alice.pk)).exists()


def test_admin_top_up_default_remark(actors: Actors) -> None:
    actors.client("admin").post(
        "/api/topup", {"user_id": actors.user.pk, "quota": 500_000}, format="json"
    )
    assert Log.objects.get().content == "通过 API 充值 ＄1.000000 额度"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"user_id": 99999, "quota": 1}, services.USER_NOT_FOUND),
        ({"quota": 1}, "user_id: "),
        ({"user_id": "alice", "quota": 1}, "user_id: "),
        ({"user_id": ALICE, "quota": -1}, "quota: quota 必须大于 0！"),
        ({"user_id": ALICE, "quota": 0}, "quota: quota 必须大于 0！"),
        ({"user_id": ALICE}, "quota: "),
    ],
)
def test_admin_top_up_validation(actors: Actors, body: dict[str, Any], message: str) -> None:
    if body.get("user_id") is ALICE:
        body = {**body, "user_id": actors.user.pk}
    response = actors.client("root").post("/api/topup", body, format="json")
    assert response.json()["success"] is False
    assert response.json()["message"].startswith(message)
    assert quota_of(actors.user) == actors.user.quota
    assert not Log.objects.exists()


def test_top_up_never_overflows_the_quota_column(actors) -> None:
    from accounts.models import User
    from billing.services import MAX_QUOTA, QUOTA_OVERFLOW

    alice = actors.user
    room = MAX_QUOTA - User.objects.get(pk=alice.pk).quota
    admin = actors.client("admin")
    filled = admin.post("/api/topup", {"user_id": alice.pk, "quota": room}, format="json")
    assert filled.json()["success"] is True
    over = admin.post("/api/topup", {"user_id": alice.pk, "quota": 1}, format="json")
    assert over.json() == {"success": False, "message": QUOTA_OVERFLOW}
    assert User.objects.get(pk=alice.pk).quota == MAX_QUOTA
