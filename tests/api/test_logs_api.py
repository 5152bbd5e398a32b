"""`/api/log*` and `/api/user/dashboard`: users see their own logs, admins everyone's."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from accounts.models import Role, User
from billing import services
from billing.models import Log, LogType
from tests.api.conftest import ACTORS, Actors, assert_denied

pytestmark = pytest.mark.django_db

LOG_FIELDS = {
    "id",
    "user_id",
    "created_at",
    "type",
    "content",
    "username",
    "token_name",
    "model_name",
    "quota",
    "prompt_tokens",
    "completion_tokens",
    "channel",
    "request_id",
    "elapsed_time",
    "is_stream",
    "system_prompt_reset",
}
NOW = int(time.time())


def make_log(user: User, **fields: Any) -> Log:
    defaults: dict[str, Any] = {
        "user_id": user.pk,
        "username": user.username,
        "created_at": NOW,
        "type": LogType.CONSUME,
        "model_name": "gpt-4o-mini",
        "token_name": "default",
        "quota": 100,
        "channel_id": 1,
    }
    return Log.objects.create(**{**defaults, **fields})


@pytest.fixture
def logs(actors: Actors) -> dict[str, Log]:
    """A small history for alice (user) and bob (other)."""
    return {
        "alice_old": make_log(actors.user, created_at=NOW - 3000, quota=10, model_name="gpt-4"),
        "alice_topup": make_log(
            actors.user, type=LogType.TOPUP, quota=500, content="通过兑换码充值 x", channel_id=0
        ),
        "alice_new": make_log(actors.user, quota=20, token_name="ci", channel_id=2),
        "bob": make_log(actors.other, quota=1000, content="bob consumed"),
    }


def ids(response: Any) -> list[int]:
    return [item["id"] for item in response.json()["data"]]


# --- the user's own logs -----------------------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_self_logs_are_only_the_callers(actors: Actors, logs: dict[str, Log], actor: str) -> None:
    response = actors.client(actor).get("/api/log/self/")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    data = response.json()["data"]
    assert {item["user_id"] for item in data} <= {getattr(actors, actor).pk}
    if actor == "user":
        assert [item["quota"] for item in data] == [20, 500, 10]  # newest first
        assert set(data[0]) == LOG_FIELDS - {"id"}
        assert data[0]["channel"] == 2
        assert data[0]["request_id"] == ""
    if actor == "other":
        assert [item["content"] for item in data] == ["bob consumed"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("type=2", [20, 10]),
        ("type=1", [500]),
        (f"start_timestamp={NOW - 10}", [20, 500]),
        (f"end_timestamp={NOW - 10}", [10]),
        ("token_name=ci", [20]),
        ("model_name=gpt-4", [10]),
        # The admin-only filters are ignored on the user's route.
        ("username=bob", [20, 500, 10]),
        ("channel=2", [20, 500, 10]),
    ],
)
def test_self_log_filters(
    actors: Actors, logs: dict[str, Log], query: str, expected: list[int]
) -> None:
    response = actors.client("user").get(f"/api/log/self?{query}")
    assert [item["quota"] for item in response.json()["data"]] == expected


def test_self_logs_page_by_ten(actors: Actors) -> None:
    for i in range(13):
        make_log(actors.user, quota=i)
    client = actors.client("user")
    first = [item["quota"] for item in client.get("/api/log/self?p=0").json()["data"]]
    second = [item["quota"] for item in client.get("/api/log/self?p=1").json()["data"]]
    assert first == list(range(12, 2, -1))
    assert second == [2, 1, 0]


def test_empty_or_malformed_numbers_are_ignored_like_one_api(
    actors: Actors, logs: dict[str, Log]
) -> None:
    # What One API's log page sends when the channel box is empty and a date was cleared.
    query = "p=0&type=0&username=&token_name=&model_name=&start_timestamp=NaN&end_timestamp="
    response = actors.client("admin").get(f"/api/log/?{query}&channel=")
    assert len(response.json()["data"]) == 4
    response = actors.client("user").get(f"/api/log/self/stat?{query}")
    assert response.json()["data"] == {"quota": 30}


@pytest.mark.parametrize("actor", ACTORS)
def test_self_search_matches_own_logs_by_type(
    actors: Actors, logs: dict[str, Log], actor: str
) -> None:
    response = actors.client(actor).get("/api/log/self/search?keyword=2")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    data = response.json()["data"]
    expected = {"user": [20, 10], "other": [1000]}.get(actor, [])
    assert [item["quota"] for item in data] == expected
    assert all("id" not in item for item in data)
    assert actors.client(actor).get("/api/log/self/search?keyword=bob").json()["data"] == []


@pytest.mark.parametrize("actor", ACTORS)
def test_self_stat_sums_own_consumption(actors: Actors, logs: dict[str, Log], actor: str) -> None:
    response = actors.client(actor).get("/api/log/self/stat")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    expected = {"user": 30, "other": 1000}.get(actor, 0)  # top-ups are not consumption
    assert response.json()["data"] == {"quota": expected}


def test_self_stat_filters_and_survives_a_rename(actors: Actors, logs: dict[str, Log]) -> None:
    client = actors.client("user")
    assert client.get("/api/log/self/stat?model_name=gpt-4").json()["data"] == {"quota": 10}
    assert client.get("/api/log/self/stat?token_name=ci").json()["data"] == {"quota": 20}
    assert client.get(f"/api/log/self/stat?start_timestamp={NOW}").json()["data"] == {"quota": 20}
    User.objects.filter(pk=actors.user.pk).update(username="alice2")
    assert client.get("/api/log/self/stat").json()["data"] == {"quota": 30}


# --- all logs (admin) --------------------------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_all_logs_are_for_admins(actors: Actors, logs: dict[str, Log], actor: str) -> None:
    response = actors.client(actor).get("/api/log/")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    data = response.json()["data"]
    assert [item["id"] for item in data] == [
        logs[name].pk for name in ("bob", "alice_new", "alice_topup", "alice_old")
    ]
    assert set(data[0]) == LOG_FIELDS


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("username=alice", ["alice_new", "alice_topup", "alice_old"]),
        ("channel=2", ["alice_new"]),
        ("type=1", ["alice_topup"]),
        ("model_name=gpt-4", ["alice_old"]),
        ("token_name=ci", ["alice_new"]),
        (f"start_timestamp={NOW - 10}&end_timestamp={NOW}&username=bob", ["bob"]),
    ],
)
def test_all_log_filters(
    actors: Actors, logs: dict[str, Log], query: str, expected: list[str]
) -> None:
    response = actors.client("admin").get(f"/api/log/?{query}")
    assert ids(response) == [logs[name].pk for name in expected]


@pytest.mark.parametrize("actor", ACTORS)
def test_stat_is_for_admins(actors: Actors, logs: dict[str, Log], actor: str) -> None:
    response = actors.client(actor).get("/api/log/stat")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    assert response.json()["data"] == {"quota": 1030}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("username=alice", 30),
        ("username=bob", 1000),
        ("channel=2", 20),
        ("type=1", 1030),  # One API ignores `type`: the sum is of consume logs
        ("model_name=gpt-4", 10),
        (f"end_timestamp={NOW - 10}", 10),
        ("username=nobody", 0),
    ],
)
def test_stat_filters(actors: Actors, logs: dict[str, Log], query: str, expected: int) -> None:
    response = actors.client("admin").get(f"/api/log/stat?{query}")
    assert response.json()["data"] == {"quota": expected}


@pytest.mark.parametrize("actor", ACTORS)
def test_search_is_for_admins(actors: Actors, logs: dict[str, Log], actor: str) -> None:
    response = actors.client(actor).get("/api/log/search?keyword=bob")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        return
    assert ids(response) == [logs["bob"].pk]


def test_search_matches_type_or_content_prefix_and_is_capped(
    actors: Actors, logs: dict[str, Log]
) -> None:
    client = actors.client("admin")
    assert ids(client.get("/api/log/search?keyword=1")) == [logs["alice_topup"].pk]
    assert ids(client.get("/api/log/search?keyword=通过")) == [logs["alice_topup"].pk]
    assert client.get("/api/log/search?keyword=consumed").json()["data"] == []
    for _ in range(services.MAX_RECENT_ITEMS + 5):
        make_log(actors.user, content="bulk")
    assert len(client.get("/api/log/search?keyword=bulk").json()["data"]) == 100


@pytest.mark.parametrize("actor", ACTORS)
def test_delete_old_logs_is_for_admins(actors: Actors, logs: dict[str, Log], actor: str) -> None:
    response = actors.client(actor).delete(f"/api/log/?target_timestamp={NOW - 10}")
    if actors.rank(actor) < Role.ADMIN:
        assert_denied(response, actor)
        assert Log.objects.count() == 4
        return
    assert response.json() == {"success": True, "message": "", "data": 1}
    assert not Log.objects.filter(pk=logs["alice_old"].pk).exists()
    assert Log.objects.count() == 3


def test_delete_needs_a_target_timestamp(actors: Actors, logs: dict[str, Log]) -> None:
    response = actors.client("root").delete("/api/log/")
    assert response.json() == {"success": False, "message": "target timestamp is required"}
    assert Log.objects.count() == 4


# --- the dashboard -----------------------------------------------------------------------


@pytest.mark.parametrize("actor", ACTORS)
def test_dashboard_shows_own_consumption(actors: Actors, logs: dict[str, Log], actor: str) -> None:
    response = actors.client(actor).get("/api/user/dashboard")
    if actor == "anonymous":
        assert_denied(response, actor)
        return
    data = response.json()["data"]
    if actor == "user":
        assert sum(row["quota"] for row in data) == 30
        assert {row["model_name"] for row in data} == {"gpt-4", "gpt-4o-mini"}
    elif actor == "other":
        assert [(row["model_name"], row["quota"]) for row in data] == [("gpt-4o-mini", 1000)]
    else:
        assert data == []


def timestamp(zone: str, *args: int) -> int:
    return int(dt.datetime(*args, tzinfo=ZoneInfo(zone)).timestamp())


@override_settings(TIME_ZONE="Asia/Shanghai")
def test_dashboard_groups_by_local_day_and_model(actors: Actors) -> None:
    at = timestamp("Asia/Shanghai", 2024, 3, 10, 12, 0)
    alice = actors.user
    make_log(
        alice,
        created_at=timestamp("Asia/Shanghai", 2024, 3, 10, 0, 30),
        quota=1,
        prompt_tokens=10,
        completion_tokens=1,
    )
    # 23:30 UTC on the 9th is already the 10th in Shanghai.
    make_log(
        alice,
        created_at=timestamp("UTC", 2024, 3, 9, 23, 30),
        quota=2,
        prompt_tokens=20,
        completion_tokens=2,
    )
    make_log(
        alice,
        created_at=timestamp("Asia/Shanghai", 2024, 3, 10, 1),
        quota=4,
        model_name="claude-3-haiku",
    )
    make_log(alice, created_at=timestamp("Asia/Shanghai", 2024, 3, 4, 0, 0), quota=8)
    # Outside the window, not consumption, or someone else's: left out.
    make_log(alice, created_at=timestamp("Asia/Shanghai", 2024, 3, 3, 23, 59), quota=16)
    make_log(alice, created_at=timestamp("Asia/Shanghai", 2024, 3, 11, 0, 0), quota=32)
    make_log(alice, created_at=at, quota=64, type=LogType.TOPUP)
    make_log(actors.other, created_at=at, quota=128)

    rows = services.dashboard(alice.pk, at=at)
    assert rows == [
        {
            "day": "2024-03-04",
            "model_name": "gpt-4o-mini",
            "request_count": 1,
            "quota": 8,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        },
        {
            "day": "2024-03-10",
            "model_name": "claude-3-haiku",
            "request_count": 1,
            "quota": 4,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        },
        {
            "day": "2024-03-10",
            "model_name": "gpt-4o-mini",
            "request_count": 2,
            "quota": 3,
            "prompt_tokens": 30,
            "completion_tokens": 3,
        },
    ]


@override_settings(TIME_ZONE="America/New_York")
def test_dashboard_days_follow_daylight_saving_changes(actors: Actors) -> None:
    # DST began on 2024-03-10 in New York: that day has 23 hours.
    at = timestamp("America/New_York", 2024, 3, 12, 9, 0)
    make_log(actors.user, created_at=timestamp("America/New_York", 2024, 3, 10, 23, 30))
    make_log(actors.user, created_at=timestamp("America/New_York", 2024, 3, 11, 0, 30))
    days = [row["day"] for row in services.dashboard(actors.user.pk, at=at)]
    assert days == ["2024-03-10", "2024-03-11"]
