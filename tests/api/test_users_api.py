from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from accounts import services
from accounts.models import Role, User, UserStatus
from billing.models import ApiKey, Log, LogType
from channels_mgmt.models import ChannelStatus
from channels_mgmt.services import set_channel_status
from oneapi.api import INVALID_ACCESS_TOKEN, USER_BANNED
from relay import auth
from tests.api.conftest import ACTORS, Actors, assert_denied, with_token
from tests.factories import make_channel, make_user

pytestmark = pytest.mark.django_db

SECRET_FIELDS = ("password", "access_token")


def snapshot() -> Any:
    """Everything a user route could change, to prove a refused request changed nothing."""
    users = list(User.objects.order_by("pk").values())
    return users, ApiKey.objects.count(), Log.objects.count()


def body(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.content
    return response.json()


def succeeded(response: Any) -> Any:
    data = body(response)
    assert data["success"] is True, data
    return data.get("data")


def refused(response: Any, message: str) -> None:
    assert body(response) == {"success": False, "message": message}


def reload(user: User) -> User:
    return User.objects.get(pk=user.pk)


@pytest.fixture
def admin2(actors: Actors) -> User:
    return with_token(username="admin2", role=Role.ADMIN)


@pytest.fixture
def root2(actors: Actors) -> User:
    return with_token(username="root2", role=Role.ROOT)


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=user.access_token)
    return client


# --- the caller's own account ------------------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_get_self_shows_the_caller_without_secrets(actors: Actors, actor: str) -> None:
    response = actors.client(actor).get("/api/user/self")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    data = succeeded(response)
    me = getattr(actors, actor)
    assert data["id"] == me.pk
    assert data["username"] == me.username
    assert data["role"] == me.role
    assert set(data) == set(services.PUBLIC_FIELDS)
    assert not set(SECRET_FIELDS) & set(data)
    assert me.access_token not in response.content.decode()


@pytest.mark.parametrize("actor", ACTORS)
def test_update_self(actors: Actors, actor: str) -> None:
    before = snapshot()
    response = actors.client(actor).put(
        "/api/user/self",
        {"username": "renamed", "display_name": "New Name", "password": "newpassword1"},
        format="json",
    )
    if actor == "anonymous":
        assert_denied(response, actor)
        assert snapshot() == before
        return
    succeeded(response)
    me = reload(getattr(actors, actor))
    assert (me.username, me.display_name) == ("renamed", "New Name")
    assert me.check_password("newpassword1")


def test_update_self_ignores_fields_it_may_not_write(actors: Actors) -> None:
    """The front-ends send back the whole user they read; quota, role, status stay put."""
    client = actors.client("user")
    data = succeeded(client.get("/api/user/self"))
    data.update(quota=10**12, role=Role.ROOT, status=UserStatus.DISABLED, password="")
    succeeded(client.put("/api/user/self", data, format="json"))
    me = reload(actors.user)
    assert (me.quota, me.role, me.status) == (1_000_000, Role.COMMON, UserStatus.ENABLED)
    assert me.check_password("password123")  # a blank password means unchanged


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "a" * 13}, "username"),
        ({"display_name": "d" * 21}, "display_name"),
        ({"password": "short"}, "password"),
        ({"password": "p" * 21}, "password"),
    ],
)
def test_update_self_validation_names_the_field(
    actors: Actors, payload: dict[str, str], field: str
) -> None:
    before = snapshot()
    data = body(actors.client("user").put("/api/user/self", payload, format="json"))
    assert data["success"] is False
    assert data["message"].startswith(f"{field}: ")
    assert snapshot() == before


def test_update_self_refuses_a_taken_username(actors: Actors) -> None:
    response = actors.client("user").put("/api/user/self", {"username": "bob"}, format="json")
    refused(response, services.USERNAME_TAKEN)
    assert reload(actors.user).username == "alice"


def test_password_change_keeps_this_session_and_ends_the_others(actors: Actors) -> None:
    browser = actors.session_client("user")
    other_browser = actors.session_client("user")
    succeeded(browser.put("/api/user/self", {"password": "brand-new-pw"}, format="json"))
    assert succeeded(browser.get("/api/user/self"))["id"] == actors.user.pk
    assert other_browser.get("/api/user/self").status_code == 401


@pytest.mark.parametrize("actor", ACTORS)
def test_delete_self(actors: Actors, actor: str) -> None:
    before = snapshot()
    client = actors.client(actor)
    response = client.delete("/api/user/self")
    if actor == "anonymous":
        assert_denied(response, actor)
        assert snapshot() == before
        return
    if actor == "root":
        refused(response, services.CANNOT_DELETE_SELF_ROOT)
        assert snapshot() == before
        return
    succeeded(response)
    me = reload(getattr(actors, actor))
    assert me.status == UserStatus.DELETED
    assert me.username.startswith("deleted_")
    assert len(me.username) <= User._meta.get_field("username").max_length
    assert body(client.get("/api/user/self")) == {"success": False, "message": USER_BANNED}


def test_delete_self_ends_the_browser_session(actors: Actors) -> None:
    browser = actors.session_client("user")
    succeeded(browser.delete("/api/user/self"))
    assert browser.get("/api/user/self").status_code == 401


@pytest.mark.parametrize("actor", ACTORS)
def test_access_token_is_regenerated_and_the_old_one_stops_working(
    actors: Actors, actor: str
) -> None:
    before = snapshot()
    old_client = actors.client(actor)
    response = old_client.get("/api/user/token")
    if actor == "anonymous":
        assert_denied(response, actor)
        assert snapshot() == before
        return
    token = succeeded(response)
    me = getattr(actors, actor)
    assert len(token) == 32
    assert token != me.access_token
    assert reload(me).access_token == token
    assert body(old_client.get("/api/user/self")) == {
        "success": False,
        "message": INVALID_ACCESS_TOKEN,
    }
    new_client = APIClient()
    new_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert succeeded(new_client.get("/api/user/self"))["id"] == me.pk


@pytest.mark.parametrize("actor", ACTORS)
def test_affiliate_code_is_made_once(actors: Actors, actor: str) -> None:
    before = snapshot()
    client = actors.client(actor)
    response = client.get("/api/user/aff")
    if actor == "anonymous":
        assert_denied(response, actor)
        assert snapshot() == before
        return
    code = succeeded(response)
    assert len(code) == 4
    assert reload(getattr(actors, actor)).aff_code == code
    assert succeeded(client.get("/api/user/aff")) == code


def test_affiliate_codes_are_unique(actors: Actors) -> None:
    codes = {succeeded(actors.client(name).get("/api/user/aff")) for name in ACTORS[1:]}
    assert len(codes) == 4


@pytest.mark.parametrize("actor", ACTORS)
def test_available_models_follow_the_channels_of_the_users_group(
    actors: Actors, actor: str
) -> None:
    make_channel(models="m1,m2")
    make_channel(models="vip-only", group="vip")
    response = actors.client(actor).get("/api/user/available_models")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    assert succeeded(response) == ["m1", "m2"]


def test_available_models_change_with_channels_and_group(actors: Actors) -> None:
    client = actors.client("user")
    channel = make_channel(models="m1,m2")
    assert succeeded(client.get("/api/user/available_models")) == ["m1", "m2"]
    set_channel_status(channel.pk, ChannelStatus.MANUALLY_DISABLED)
    assert succeeded(client.get("/api/user/available_models")) == []
    make_channel(models="vip-only", group="vip")
    services.update_user(actors.root, actors.user.pk, group="vip")
    assert succeeded(client.get("/api/user/available_models")) == ["vip-only"]


# --- administration: reading -------------------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_list_users_is_for_admins_and_skips_deleted(actors: Actors, actor: str) -> None:
    gone = make_user(username="gone", status=UserStatus.DELETED)
    response = actors.client(actor).get("/api/user/")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    data = succeeded(response)
    ids = [u["id"] for u in data]
    assert gone.pk not in ids
    assert ids == sorted(ids, reverse=True)
    assert set(ids) == {actors.user.pk, actors.other.pk, actors.admin.pk, actors.root.pk}
    assert all(not set(SECRET_FIELDS) & set(u) for u in data)


def test_list_users_orders_and_pages(actors: Actors) -> None:
    User.objects.filter(pk=actors.other.pk).update(quota=5_000_000, request_count=9)
    client = actors.client("admin")
    by_quota = succeeded(client.get("/api/user?order=quota"))
    assert by_quota[0]["id"] == actors.other.pk
    by_requests = succeeded(client.get("/api/user/?order=request_count"))
    assert by_requests[0]["id"] == actors.other.pk
    for number in range(12):
        make_user(username=f"extra{number}")
    first = succeeded(client.get("/api/user/?p=0"))
    second = succeeded(client.get("/api/user/?p=1"))
    assert len(first) == 10
    assert len(second) == 6
    assert not {u["id"] for u in first} & {u["id"] for u in second}


@pytest.mark.parametrize("actor", ACTORS)
def test_search_users(actors: Actors, actor: str) -> None:
    carol = make_user(username="carol", email="carol@example.com", display_name="Caz")
    client = actors.client(actor)
    response = client.get("/api/user/search", {"keyword": "car"})
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    assert [u["id"] for u in succeeded(response)] == [carol.pk]
    by_id = succeeded(client.get("/api/user/search", {"keyword": str(actors.other.pk)}))
    assert actors.other.pk in [u["id"] for u in by_id]
    by_email = succeeded(client.get("/api/user/search", {"keyword": "carol@"}))
    assert [u["id"] for u in by_email] == [carol.pk]
    by_display_name = succeeded(client.get("/api/user/search", {"keyword": "Ca"}))
    assert carol.pk in [u["id"] for u in by_display_name]
    assert "access_token" not in response.content.decode()
    assert succeeded(client.get("/api/user/search", {"keyword": "9" * 30})) == []
    assert succeeded(client.get("/api/user/search", {"keyword": "²"})) == []


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize("target", ["user", "admin", "admin2", "root"])
def test_get_user_needs_a_higher_role_unless_root(
    actors: Actors, admin2: User, actor: str, target: str
) -> None:
    target_user = admin2 if target == "admin2" else getattr(actors, target)
    response = actors.client(actor).get(f"/api/user/{target_user.pk}")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    if actor == "admin" and target != "user":
        refused(response, services.CANNOT_READ_PEER)
        return
    data = succeeded(response)
    assert data["id"] == target_user.pk
    assert not set(SECRET_FIELDS) & set(data)


def test_get_unknown_user(actors: Actors) -> None:
    refused(actors.client("root").get("/api/user/999999"), services.USER_NOT_FOUND)
    refused(actors.client("root").get(f"/api/user/{10**30}"), services.USER_NOT_FOUND)


# --- administration: creating and editing -------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_create_user(actors: Actors, actor: str) -> None:
    before = snapshot()
    response = actors.client(actor).post(
        "/api/user/", {"username": "dave", "password": "password99"}, format="json"
    )
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert snapshot() == before
        return
    succeeded(response)
    dave = User.objects.get(username="dave")
    assert (dave.role, dave.display_name, dave.status) == (Role.COMMON, "dave", UserStatus.ENABLED)
    assert dave.check_password("password99")
    assert dave.access_token and dave.aff_code
    assert ApiKey.objects.filter(user=dave, name="default", unlimited_quota=True).exists()


@pytest.mark.parametrize(("actor", "role"), [("admin", Role.ADMIN), ("root", Role.ROOT)])
def test_create_user_refuses_roles_at_or_above_the_callers(
    actors: Actors, actor: str, role: int
) -> None:
    before = snapshot()
    response = actors.client(actor).post(
        "/api/user/", {"username": "dave", "password": "password99", "role": role}, format="json"
    )
    refused(response, services.CANNOT_CREATE_PEER)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"password": "password99"}, "username: "),
        ({"username": "dave"}, "password: "),
        ({"username": "dave", "password": "short"}, "password: "),
        ({"username": "d" * 13, "password": "password99"}, "username: "),
        (
            {"username": "dave", "password": "password99", "display_name": "x" * 21},
            "display_name: ",
        ),
        ({"username": "alice", "password": "password99"}, services.USERNAME_TAKEN),
    ],
)
def test_create_user_validation(actors: Actors, payload: dict[str, str], message: str) -> None:
    before = snapshot()
    data = body(actors.client("admin").post("/api/user/", payload, format="json"))
    assert data["success"] is False
    assert data["message"].startswith(message)
    assert snapshot() == before


@pytest.mark.parametrize("actor", ACTORS)
def test_update_user(actors: Actors, actor: str) -> None:
    before = snapshot()
    response = actors.client(actor).put(
        "/api/user/",
        {"id": actors.user.pk, "display_name": "Edited", "group": "vip", "quota": 42},
        format="json",
    )
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert snapshot() == before
        return
    succeeded(response)
    user = reload(actors.user)
    assert (user.display_name, user.group, user.quota) == ("Edited", "vip", 42)


@pytest.mark.parametrize(
    ("actor", "target", "allowed"),
    [
        ("admin", "admin", False),  # same role, even oneself
        ("admin", "admin2", False),
        ("admin", "root", False),
        ("root", "admin", True),
        ("root", "root", True),  # root may edit itself
    ],
)
def test_update_user_role_protection(
    actors: Actors, admin2: User, actor: str, target: str, allowed: bool
) -> None:
    target_user = admin2 if target == "admin2" else getattr(actors, target)
    before = snapshot()
    response = actors.client(actor).put(
        "/api/user/", {"id": target_user.pk, "display_name": "Edited"}, format="json"
    )
    if not allowed:
        refused(response, services.CANNOT_UPDATE_PEER)
        assert snapshot() == before
        return
    succeeded(response)
    assert reload(target_user).display_name == "Edited"


def test_only_root_changes_roles(actors: Actors, root2: User) -> None:
    admin, root = actors.client("admin"), actors.client("root")
    before = snapshot()
    response = admin.put("/api/user/", {"id": actors.user.pk, "role": Role.ADMIN}, format="json")
    refused(response, services.CANNOT_RAISE_ROLE)
    assert snapshot() == before
    # The role the front-end sends back unchanged is accepted.
    succeeded(admin.put("/api/user/", {"id": actors.user.pk, "role": Role.COMMON}, format="json"))
    succeeded(root.put("/api/user/", {"id": actors.user.pk, "role": Role.ADMIN}, format="json"))
    assert reload(actors.user).role == Role.ADMIN
    succeeded(root.put("/api/user/", {"id": actors.admin.pk, "role": Role.COMMON}, format="json"))
    assert reload(actors.admin).role == Role.COMMON
    before = snapshot()
    response = root.put("/api/user/", {"id": root2.pk, "role": Role.COMMON}, format="json")
    refused(response, services.CANNOT_DEMOTE_ROOT)
    response = root.put("/api/user/", {"id": actors.other.pk, "role": Role.ROOT}, format="json")
    refused(response, services.CANNOT_RAISE_ROLE)
    response = root.put("/api/user/", {"id": actors.other.pk, "role": 7}, format="json")
    assert body(response)["message"].startswith("role: ")
    assert snapshot() == before


def test_update_user_logs_quota_changes_like_one_api(actors: Actors) -> None:
    client = actors.client("admin")
    succeeded(client.put("/api/user/", {"id": actors.user.pk, "quota": "1500000"}, format="json"))
    assert reload(actors.user).quota == 1_500_000
    log = Log.objects.get(user_id=actors.user.pk)
    assert log.type == LogType.MANAGE
    assert log.content == "管理员将用户额度从 ＄2.000000 额度修改为 ＄3.000000 额度"
    # Zero is a value like any other (One API's GORM update skipped it).
    succeeded(client.put("/api/user/", {"id": actors.user.pk, "quota": 0}, format="json"))
    assert reload(actors.user).quota == 0
    # An unchanged quota writes no log.
    succeeded(client.put("/api/user/", {"id": actors.user.pk, "quota": 0}, format="json"))
    assert Log.objects.filter(user_id=actors.user.pk).count() == 2


def test_update_user_password_and_username(actors: Actors) -> None:
    client = actors.client("admin")
    succeeded(
        client.put(
            "/api/user/",
            {"id": actors.user.pk, "username": "alice2", "password": "reset-by-admin"},
            format="json",
        )
    )
    user = reload(actors.user)
    assert user.username == "alice2"
    assert user.check_password("reset-by-admin")
    response = client.put("/api/user/", {"id": actors.user.pk, "username": "bob"}, format="json")
    refused(response, services.USERNAME_TAKEN)


def test_update_user_accepts_what_the_front_end_sends_back(actors: Actors) -> None:
    client = actors.client("admin")
    data = succeeded(client.get(f"/api/user/{actors.user.pk}"))
    data.update(password="", quota=7, status=UserStatus.DISABLED, used_quota=123, is_edit=True)
    succeeded(client.put("/api/user/", data, format="json"))
    user = reload(actors.user)
    assert (user.quota, user.status, user.used_quota) == (7, UserStatus.ENABLED, 0)
    assert user.check_password("password123")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"display_name": "x"}, "id: "),
        ({"id": "abc"}, "id: "),
        ({"id": 1, "quota": -5}, "quota: "),
        ({"id": 1, "quota": "lots"}, "quota: "),
        ({"id": 1, "group": "g" * 33}, "group: "),
        ({"id": 1, "password": "short"}, "password: "),
        ({"id": 1, "username": "u" * 13}, "username: "),
        ({"id": 999999}, services.USER_NOT_FOUND),
    ],
)
def test_update_user_validation(actors: Actors, payload: dict[str, Any], message: str) -> None:
    before = snapshot()
    data = body(actors.client("root").put("/api/user/", payload, format="json"))
    assert data["success"] is False
    assert data["message"].startswith(message)
    assert snapshot() == before


# --- administration: managing and deleting -------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_manage_disable_and_enable(actors: Actors, actor: str) -> None:
    before = snapshot()
    client = actors.client(actor)
    response = client.post(
        "/api/user/manage", {"username": "alice", "action": "disable"}, format="json"
    )
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert snapshot() == before
        return
    assert succeeded(response) == {"role": Role.COMMON, "status": UserStatus.DISABLED}
    assert body(actors.client("user").get("/api/user/self")) == {
        "success": False,
        "message": USER_BANNED,
    }
    response = client.post(
        "/api/user/manage", {"username": "alice", "action": "enable"}, format="json"
    )
    assert succeeded(response) == {"role": Role.COMMON, "status": UserStatus.ENABLED}
    assert succeeded(actors.client("user").get("/api/user/self"))["id"] == actors.user.pk


@pytest.mark.parametrize(
    ("actor", "target", "action", "outcome"),
    [
        # Same or higher role: refused before the action is looked at.
        ("admin", "admin2", "disable", services.CANNOT_UPDATE_PEER),
        ("admin", "admin1", "disable", services.CANNOT_UPDATE_PEER),
        ("admin", "root1", "disable", services.CANNOT_UPDATE_PEER),
        ("admin", "admin2", "promote", services.CANNOT_UPDATE_PEER),
        ("admin", "root1", "demote", services.CANNOT_UPDATE_PEER),
        # Root protections.
        ("root", "root1", "disable", services.CANNOT_DISABLE_ROOT),
        ("root", "root2", "delete", services.CANNOT_DELETE_ROOT),
        ("root", "root2", "demote", services.CANNOT_DEMOTE_ROOT),
        ("root", "root2", "promote", services.ALREADY_ADMIN),
        # Promotion is root's; demotion needs an admin.
        ("admin", "alice", "promote", services.ONLY_ROOT_PROMOTES),
        ("admin", "alice", "demote", services.ALREADY_COMMON),
        ("root", "admin2", "promote", services.ALREADY_ADMIN),
        ("root", "alice", "demote", services.ALREADY_COMMON),
        ("root", "nobody", "disable", services.USER_NOT_FOUND),
        # Allowed.
        ("admin", "alice", "disable", {"role": Role.COMMON, "status": UserStatus.DISABLED}),
        ("root", "alice", "promote", {"role": Role.ADMIN, "status": UserStatus.ENABLED}),
        ("root", "admin2", "demote", {"role": Role.COMMON, "status": UserStatus.ENABLED}),
        ("root", "admin2", "disable", {"role": Role.ADMIN, "status": UserStatus.DISABLED}),
        ("root", "root2", "enable", {"role": Role.ROOT, "status": UserStatus.ENABLED}),
        ("admin", "alice", "delete", {"role": Role.COMMON, "status": UserStatus.DELETED}),
    ],
)
def test_manage_rules(
    actors: Actors,
    admin2: User,
    root2: User,
    actor: str,
    target: str,
    action: str,
    outcome: str | dict[str, int],
) -> None:
    before = snapshot()
    response = actors.client(actor).post(
        "/api/user/manage", {"username": target, "action": action}, format="json"
    )
    if isinstance(outcome, str):
        refused(response, outcome)
        assert snapshot() == before
        return
    assert succeeded(response) == outcome
    changed = User.objects.filter(status=outcome["status"], role=outcome["role"])
    if action == "delete":
        assert changed.filter(username__startswith="deleted_").count() == 1
        assert not User.objects.filter(username=target).exists()
    else:
        assert changed.filter(username=target).exists()


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"username": "alice", "action": "explode"}, "action: "),
        ({"username": "alice"}, "action: "),
        ({"action": "disable"}, "username: "),
    ],
)
def test_manage_validation_names_the_field(
    actors: Actors, payload: dict[str, str], message: str
) -> None:
    before = snapshot()
    data = body(actors.client("admin").post("/api/user/manage", payload, format="json"))
    assert data["success"] is False
    assert data["message"].startswith(message)
    assert snapshot() == before


def test_deleted_users_cannot_be_managed_back(actors: Actors) -> None:
    client = actors.client("admin")
    succeeded(client.delete(f"/api/user/{actors.user.pk}"))
    deleted_name = reload(actors.user).username
    response = client.post(
        "/api/user/manage", {"username": deleted_name, "action": "enable"}, format="json"
    )
    refused(response, services.USER_NOT_FOUND)
    assert reload(actors.user).status == UserStatus.DELETED


@pytest.mark.parametrize("actor", ACTORS)
def test_delete_user(actors: Actors, actor: str) -> None:
    before = snapshot()
    client = actors.client(actor)
    response = client.delete(f"/api/user/{actors.user.pk}")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert snapshot() == before
        return
    assert body(response) == {"success": True, "message": ""}
    user = reload(actors.user)
    assert user.status == UserStatus.DELETED
    assert user.username.startswith("deleted_")
    listed = {u["id"] for u in succeeded(client.get("/api/user/"))}
    assert actors.user.pk not in listed
    # Deleting again changes nothing.
    succeeded(client.delete(f"/api/user/{actors.user.pk}"))
    assert reload(actors.user).username == user.username


@pytest.mark.parametrize(
    ("actor", "target"),
    [("admin", "admin2"), ("admin", "admin"), ("admin", "root"), ("root", "root2")],
)
def test_delete_user_needs_a_strictly_higher_role(
    actors: Actors, admin2: User, root2: User, actor: str, target: str
) -> None:
    target_user = {"admin2": admin2, "root2": root2}.get(target) or getattr(actors, target)
    before = snapshot()
    response = actors.client(actor).delete(f"/api/user/{target_user.pk}")
    refused(response, services.CANNOT_DELETE_PEER)
    assert snapshot() == before


# --- the relay sees the changes at once ----------------------------------------------------


def cached_owner(user: User) -> str:
    key = ApiKey.objects.create(
        user=user, key=f"{user.pk:k<48}", name="relay", unlimited_quota=True
    )
    assert auth.load_key(key.key) is not None
    assert auth.cached_user(user.pk) is not None
    return key.key


@pytest.mark.parametrize("action", ["disable", "delete", "promote"])
def test_manage_drops_the_user_from_relay_caches(actors: Actors, action: str) -> None:
    key = cached_owner(actors.user)
    succeeded(
        actors.client("root").post(
            "/api/user/manage", {"username": "alice", "action": action}, format="json"
        )
    )
    assert auth.cached_user(actors.user.pk) is None
    assert auth.cached_key(key) == (False, None)


def test_admin_edits_drop_the_user_from_relay_caches(actors: Actors) -> None:
    cached_owner(actors.user)
    succeeded(
        actors.client("admin").put("/api/user/", {"id": actors.user.pk, "quota": 5}, format="json")
    )
    assert auth.cached_user(actors.user.pk) is None
    cached_owner(actors.other)
    succeeded(actors.client("admin").delete(f"/api/user/{actors.other.pk}"))
    assert auth.cached_user(actors.other.pk) is None


def test_self_changes_drop_the_user_from_relay_caches(actors: Actors) -> None:
    key = cached_owner(actors.user)
    succeeded(actors.client("user").put("/api/user/self", {"username": "al"}, format="json"))
    assert auth.cached_user(actors.user.pk) is None
    assert auth.load_key(key) is not None
    assert auth.cached_user(actors.user.pk).username == "al"
    succeeded(actors.client("user").delete("/api/user/self"))
    assert auth.cached_user(actors.user.pk) is None


def test_disabled_users_session_is_refused_at_once(actors: Actors) -> None:
    browser = actors.session_client("user")
    assert succeeded(browser.get("/api/user/self"))["id"] == actors.user.pk
    services.manage_user(actors.admin, "alice", "disable")
    assert_denied(browser.get("/api/user/self"), "anonymous")  # the session no longer counts
