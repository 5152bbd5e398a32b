from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from billing.models import Log
from channels_mgmt import tasks, testing
from channels_mgmt.models import Ability, Channel, ChannelStatus
from channels_mgmt.selection import routing_table
from relay.catalog import ChannelType
from tests.api.conftest import ACTORS, Actors, assert_denied
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.django_db

KEY = "sk-upstream-secret-key"


@dataclass
class Queued:
    """Celery tasks the views queued, instead of publishing them to the broker."""

    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Queued:
    record = Queued()
    for name, task in (
        ("test_all_channels", tasks.test_all_channels_task),
        ("update_all_balances", tasks.update_all_balances_task),
    ):
        monkeypatch.setattr(
            task, "delay", lambda *args, _name=name: record.calls.append((_name, args))
        )
    return record


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY, reply="pong") as fake:
        yield fake


@pytest.fixture
def channel(upstream: FakeOpenAI) -> Channel:
    return make_channel(
        name="main", key=KEY, base_url=upstream.base_url, models="gpt-4o-mini,gpt-4o"
    )


def candidates(model: str, group: str = "default") -> set[int]:
    return {c.id for c in routing_table().candidates.get((group, model), [])}


def snapshot() -> tuple[list[dict[str, Any]], int, int]:
    return (
        list(Channel.objects.order_by("pk").values()),
        Ability.objects.count(),
        Log.objects.count(),
    )


def call(actors: Actors, actor: str, method: str, path: str, body: Any = None) -> Any:
    client = actors.client(actor)
    if body is None:
        return getattr(client, method)(path)
    return getattr(client, method)(path, body, format="json")


# ---------------------------------------------------------------------- authorization

ROUTES = [
    ("get", "/api/channel/?p=0", None),
    ("get", "/api/channel/search?keyword=main", None),
    ("get", "/api/channel/{id}", None),
    ("post", "/api/channel/", {"name": "new", "key": "sk-new", "models": "gpt-4o"}),
    ("put", "/api/channel/", {"id": "{id}", "name": "renamed"}),
    ("delete", "/api/channel/{id}", None),
    ("delete", "/api/channel/disabled", None),
    ("get", "/api/channel/models", None),
    ("get", "/api/channel/test/{id}?model=gpt-4o", None),
    ("get", "/api/channel/test?scope=all", None),
    ("get", "/api/channel/update_balance/{id}", None),
    ("get", "/api/channel/update_balance", None),
]


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_every_route_is_for_admins(
    actors: Actors,
    actor: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    channel: Channel,
    upstream: FakeOpenAI,
    queued: Queued,
) -> None:
    make_channel(name="off", status=ChannelStatus.MANUALLY_DISABLED)
    path = path.replace("{id}", str(channel.pk))
    if body is not None:
        body = {k: channel.pk if v == "{id}" else v for k, v in body.items()}
    before = snapshot()

    response = call(actors, actor, method, path, body)

    if actor in ("anonymous", "user", "other"):
        assert_denied(response, actor)
        assert snapshot() == before
        assert upstream.requests == []
        assert queued.calls == []
        return
    assert response.status_code == 200
    assert response.json()["success"] is True, response.json()
    assert KEY not in response.content.decode()


# ---------------------------------------------------------------------- reading


def channel_dicts(body: dict[str, Any]) -> list[dict[str, Any]]:
    data = body["data"]
    return data if isinstance(data, list) else [data]


def test_keys_never_leave_the_server(actors: Actors, channel: Channel) -> None:
    client = actors.client("admin")
    responses = [
        client.get("/api/channel/"),
        client.get("/api/channel/search?keyword=ma"),
        client.get(f"/api/channel/{channel.pk}"),
        client.put("/api/channel/", {"id": channel.pk, "key": "sk-rotated"}, format="json"),
        client.post(
            "/api/channel/", {"name": "b", "key": "sk-one\nsk-two", "models": "m"}, format="json"
        ),
    ]
    for response in responses:
        text = response.content.decode()
        assert response.json()["success"] is True
        for secret in (KEY, "sk-rotated", "sk-one", "sk-two"):
            assert secret not in text
        for item in channel_dicts(response.json()):
            assert "key" not in item
            assert item["id"] > 0


def test_list_pages_newest_first(actors: Actors) -> None:
    ids = [make_channel(name=f"c{i}").pk for i in range(12)]
    client = actors.client("admin")

    first = client.get("/api/channel/?p=0").json()["data"]
    second = client.get("/api/channel/?p=1").json()["data"]

    assert [c["id"] for c in first] == ids[::-1][:10]
    assert [c["id"] for c in second] == ids[::-1][10:]
    assert set(first[0]) >= {"type", "status", "name", "models", "group", "priority", "weight"}


def test_search_matches_id_or_name_prefix(actors: Actors) -> None:
    alpha = make_channel(name="alpha-1")
    make_channel(name="beta-alpha")
    client = actors.client("admin")

    by_name = client.get("/api/channel/search?keyword=alpha").json()["data"]
    by_id = client.get(f"/api/channel/search?keyword={alpha.pk}").json()["data"]

    assert [c["id"] for c in by_name] == [alpha.pk]
    assert alpha.pk in [c["id"] for c in by_id]


def test_missing_channel_is_a_failure(actors: Actors) -> None:
    client = actors.client("admin")
    for response in (
        client.get("/api/channel/999999"),
        client.delete("/api/channel/999999"),
        client.put("/api/channel/", {"id": 999999, "name": "x"}, format="json"),
        client.get("/api/channel/test/999999"),
        client.get("/api/channel/update_balance/999999"),
    ):
        assert response.json() == {"success": False, "message": "渠道不存在"}


def test_builtin_models_are_an_openai_list_without_repeats(actors: Actors) -> None:
    body = actors.client("admin").get("/api/channel/models").json()

    assert body["object"] == "list"
    ids = [model["id"] for model in body["data"]]
    assert len(ids) == len(set(ids))
    gpt = next(model for model in body["data"] if model["id"] == "gpt-4o-mini")
    assert gpt["object"] == "model"
    assert gpt["owned_by"] == "openai"
    assert any(model_id.startswith("claude-3") for model_id in ids)


# ---------------------------------------------------------------------- writing


def test_multi_line_key_creates_one_channel_per_line(actors: Actors) -> None:
    body = {
        "type": 1,
        "name": "batch",
        "key": "sk-a\nsk-b\n\n  sk-c  \n",
        "models": "gpt-4o-mini, gpt-4o",
        "group": "default,vip",
        "priority": 3,
        "model_mapping": '{\n  "gpt-4o": "gpt-4o-2024-08-06"\n}',
        "config": '{"region": "us"}',
    }

    response = actors.client("admin").post("/api/channel/", body, format="json")

    assert response.json()["success"] is True
    created = list(Channel.objects.filter(name="batch").order_by("pk"))
    assert [c.key for c in created] == ["sk-a", "sk-b", "sk-c"]
    assert {c.models for c in created} == {"gpt-4o-mini,gpt-4o"}
    assert {c.model_mapping for c in created} == {body["model_mapping"]}
    assert all(c.created_time > 0 for c in created)
    ids = {c.pk for c in created}
    assert candidates("gpt-4o") == ids
    assert candidates("gpt-4o-mini", "vip") == ids
    assert Ability.objects.filter(channel__in=created).count() == 3 * 2 * 2


def test_create_defaults(actors: Actors) -> None:
    response = actors.client("admin").post(
        "/api/channel/", {"key": "sk-x", "models": ["m1", "m2"], "group": ""}, format="json"
    )

    channel = Channel.objects.get(pk=response.json()["data"][0]["id"])
    assert (channel.type, channel.group, channel.status) == (1, "default", ChannelStatus.ENABLED)
    assert channel.models == "m1,m2"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"models": "m"}, "key: "),
        ({"key": " \n "}, "key: 该字段不能为空"),
        ({"key": "k", "model_mapping": "{broken"}, "model_mapping: 不是合法的 JSON"),
        ({"key": "k", "model_mapping": '["a"]'}, "model_mapping: 必须是 JSON 对象"),
        ({"key": "k", "model_mapping": '{"a": 1}'}, "model_mapping: 必须是名称到名称"),
        ({"key": "k", "config": "[]"}, "config: 必须是 JSON 对象"),
        ({"key": "k", "type": 0}, "type: "),
        ({"key": "k", "type": 52}, "type: "),
        ({"key": "k", "status": 7}, "status: "),
        ({"key": "k", "weight": -1}, "weight: "),
        ({"key": "k", "group": "g" * 33}, "group: "),
        ({"key": "k", "models": 5}, "models: "),
    ],
)
def test_create_validation_names_the_field(
    actors: Actors, body: dict[str, Any], message: str
) -> None:
    response = actors.client("admin").post("/api/channel/", body, format="json")

    assert response.json()["success"] is False
    assert response.json()["message"].startswith(message)
    assert Channel.objects.count() == 0


def test_update_changes_only_what_is_given(actors: Actors, channel: Channel) -> None:
    Channel.objects.filter(pk=channel.pk).update(used_quota=77, balance=9.5)
    before = Channel.objects.filter(pk=channel.pk).values().get()
    client = actors.client("admin")

    response = client.put(
        "/api/channel/",
        {
            "id": channel.pk,
            "name": "renamed",
            "key": "",
            "priority": None,
            # What the editor sends back from its read; never written through this route.
            "used_quota": 0,
            "balance": 0,
            "created_time": 1,
            "groups": ["default"],
        },
        format="json",
    )

    assert response.json()["success"] is True
    assert response.json()["data"]["name"] == "renamed"
    after = Channel.objects.filter(pk=channel.pk).values().get()
    assert after == {**before, "name": "renamed"}
    assert after["key"] == KEY


def test_update_can_replace_the_key_but_only_with_one(actors: Actors, channel: Channel) -> None:
    client = actors.client("admin")

    bad = client.put("/api/channel/", {"id": channel.pk, "key": "a\nb"}, format="json")
    good = client.put("/api/channel/", {"id": channel.pk, "key": " sk-new "}, format="json")

    assert bad.json()["success"] is False
    assert bad.json()["message"].startswith("key: ")
    assert good.json()["success"] is True
    channel.refresh_from_db()
    assert channel.key == "sk-new"


def test_abilities_follow_updates(actors: Actors, channel: Channel) -> None:
    client = actors.client("admin")
    assert candidates("gpt-4o") == {channel.pk}

    client.put("/api/channel/", {"id": channel.pk, "models": "o1", "group": "vip"}, format="json")
    assert candidates("gpt-4o") == set()
    assert candidates("o1", "vip") == {channel.pk}

    client.put("/api/channel/", {"id": channel.pk, "status": 2}, format="json")
    assert candidates("o1", "vip") == set()
    response = client.put("/api/channel/", {"id": channel.pk, "status": 1}, format="json")
    assert response.json()["data"]["status"] == 1
    assert candidates("o1", "vip") == {channel.pk}

    # Zero is a value, not "absent" (GORM's Updates would skip it).
    client.put("/api/channel/", {"id": channel.pk, "priority": 5}, format="json")
    client.put("/api/channel/", {"id": channel.pk, "priority": 0}, format="json")
    channel.refresh_from_db()
    assert channel.priority == 0
    assert set(Ability.objects.filter(channel=channel).values_list("priority", flat=True)) == {0}


def test_blank_group_on_update_keeps_the_groups(actors: Actors, channel: Channel) -> None:
    actors.client("admin").put("/api/channel/", {"id": channel.pk, "group": ""}, format="json")
    channel.refresh_from_db()
    assert channel.group == "default"


def test_delete_one_channel(actors: Actors, channel: Channel) -> None:
    response = actors.client("admin").delete(f"/api/channel/{channel.pk}/")

    assert response.json() == {"success": True, "message": ""}
    assert not Channel.objects.filter(pk=channel.pk).exists()
    assert candidates("gpt-4o") == set()


def test_delete_disabled_returns_the_count(actors: Actors, channel: Channel) -> None:
    make_channel(status=ChannelStatus.MANUALLY_DISABLED)
    make_channel(status=ChannelStatus.AUTO_DISABLED)

    response = actors.client("admin").delete("/api/channel/disabled")

    assert response.json() == {"success": True, "message": "", "data": 2}
    assert list(Channel.objects.values_list("pk", flat=True)) == [channel.pk]


# ---------------------------------------------------------------------- test and balance


def test_channel_test_answers_one_apis_keys(
    actors: Actors, channel: Channel, upstream: FakeOpenAI
) -> None:
    body = actors.client("admin").get(f"/api/channel/test/{channel.pk}?model=gpt-4o").json()

    assert set(body) == {"success", "message", "time", "modelName", "model"}
    assert body["success"] is True
    assert body["message"] == "pong"
    assert body["modelName"] == body["model"] == "gpt-4o"
    assert body["time"] > 0
    assert upstream.last_request.json["model"] == "gpt-4o"


def test_channel_test_failure(actors: Actors, channel: Channel, upstream: FakeOpenAI) -> None:
    upstream.scenario = "error_401"

    body = actors.client("admin").get(f"/api/channel/test/{channel.pk}").json()

    assert body["success"] is False
    assert body["message"].startswith("http status code: 401")
    assert body["time"] == 0
    assert body["modelName"] == "gpt-4o-mini"


def test_test_all_is_queued(actors: Actors, queued: Queued) -> None:
    client = actors.client("admin")

    assert client.get("/api/channel/test").json() == {"success": True, "message": ""}
    assert client.get("/api/channel/test?scope=disabled").json()["success"] is True
    bad = client.get("/api/channel/test?scope=some").json()

    assert bad["success"] is False
    assert queued.calls == [("test_all_channels", ("all",)), ("test_all_channels", ("disabled",))]


def test_test_all_refuses_while_a_run_holds_the_lock(actors: Actors, queued: Queued) -> None:
    lock = testing.RunLock()
    assert lock.acquire()
    try:
        body = actors.client("admin").get("/api/channel/test?scope=all").json()
    finally:
        lock.release()

    assert body == {"success": False, "message": testing.ALREADY_RUNNING}
    assert queued.calls == []


def test_balance_of_one_channel(actors: Actors, upstream: FakeOpenAI) -> None:
    upstream.hard_limit_usd = 50.0
    upstream.total_usage = 1234.0
    channel = make_channel(type=ChannelType.OPENAI, key=KEY, base_url=upstream.base_url)

    body = actors.client("admin").get(f"/api/channel/update_balance/{channel.pk}/").json()

    assert body == {"success": True, "message": "", "balance": pytest.approx(37.66)}
    channel.refresh_from_db()
    assert channel.balance == pytest.approx(37.66)
    assert channel.balance_updated_time > 0


def test_balance_of_an_unsupported_type(actors: Actors) -> None:
    channel = make_channel(type=ChannelType.AZURE)

    body = actors.client("admin").get(f"/api/channel/update_balance/{channel.pk}").json()

    assert body == {"success": False, "message": "尚未实现"}


def test_update_all_balances_is_queued(actors: Actors, queued: Queued) -> None:
    body = actors.client("admin").get("/api/channel/update_balance").json()

    assert body == {"success": True, "message": ""}
    assert queued.calls == [("update_all_balances", ())]


def test_session_login_works_too(actors: Actors, channel: Channel) -> None:
    response = actors.session_client("admin").get(f"/api/channel/{channel.pk}")
    assert response.json()["data"]["name"] == "main"
    assert json.dumps(response.json()).find(KEY) == -1


def test_a_broker_failure_is_reported(actors: Actors, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.update_all_balances_task, "delay", broken)

    body = actors.client("admin").get("/api/channel/update_balance").json()

    assert body == {"success": False, "message": "无法启动后台任务：broker down"}
