"""The admin Channels page: list, search, sort, type-aware add and edit, inline priority and
weight, status, delete, balances and tests, for each role, as full pages and HTMX fragments."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from channels_mgmt.models import Ability, Channel, ChannelStatus
from dashboard.channel_forms import ChannelForm
from oneapi import options
from relay.catalog import MODELS_BY_CHANNEL_TYPE, ChannelType
from tests.dashboard.conftest import ENGLISH, HTMX, People, page_html
from tests.factories import make_channel
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.django_db


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


def toast_of(response) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


# --- who may open what ----------------------------------------------------------------------

PAGES = [
    ("get", "/channel"),
    ("get", "/channel/add"),
    ("get", "/channel/edit/{id}"),
    ("get", "/channel/type-fields?type=3"),
    ("get", "/channel/{id}/delete"),
    ("get", "/channel/disabled/delete"),
    ("post", "/channel/{id}/field"),
    ("post", "/channel/{id}/status"),
    ("post", "/channel/{id}/test"),
    ("post", "/channel/{id}/balance"),
    ("post", "/channel/balance"),
    ("post", "/channel/test"),
]


@pytest.mark.parametrize(("method", "path"), PAGES)
@pytest.mark.parametrize("role", ["anonymous", "user"])
def test_non_admins_get_nothing_and_change_nothing(
    people: People, role: str, method: str, path: str
) -> None:
    channel = make_channel(name="kept", priority=3)
    url = path.format(id=channel.pk)
    response = getattr(people.client(role), method)(url, {"priority": "9", "status": "2"})
    if role == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith("/login?next=")
    else:
        assert response.status_code == 403
        assert "kept" not in response.content.decode()
    channel.refresh_from_db()
    assert (channel.priority, channel.status) == (3, ChannelStatus.ENABLED)


def test_anonymous_htmx_request_is_sent_to_login(people: People) -> None:
    response = people.client("anonymous").get("/channel", headers=HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/login?next=%2Fchannel"


@pytest.mark.parametrize("role", ["admin", "root"])
def test_admins_see_the_list_page_and_its_fragment(people: People, role: str) -> None:
    make_channel(name="alpha", type=1, models="gpt-4", priority=5, weight=7, used_quota=0)
    make_channel(name="beta", type=ChannelType.ANTHROPIC, models="claude-3-haiku-20240307")
    client = people.client(role)

    html = page_html(client.get("/channel", headers=ENGLISH))
    assert "<html" in html
    assert html.index('data-channel-name="beta"') < html.index('data-channel-name="alpha"')
    assert 'name="priority" value="5"' in html and 'name="weight" value="7"' in html
    assert "Anthropic" in html and "Test all channels" in html
    assert 'href="/channel"' in html  # the menu entry appeared

    fragment = page_html(client.get("/channel?keyword=alp", headers={**HTMX, **ENGLISH}))
    assert "<html" not in fragment
    assert fragment.startswith('\n<div id="channel-table"') or 'id="channel-table"' in fragment
    assert 'data-channel-name="alpha"' in fragment
    assert 'data-channel-name="beta"' not in fragment


def test_search_by_id_sort_and_paging(people: People) -> None:
    channels = [make_channel(name=f"c{n}", priority=n) for n in range(12)]
    client = people.client("admin")
    html = page_html(client.get(f"/channel?keyword={channels[3].pk}", headers=HTMX))
    assert html.count("data-channel-name=") == 1 and 'data-channel-name="c3"' in html

    by_priority = page_html(client.get("/channel?order=priority", headers=HTMX))
    assert by_priority.index('"c11"') < by_priority.index('"c10"') < by_priority.index('"c2"')
    assert by_priority.count("data-channel-name=") == 10
    second = page_html(client.get("/channel?order=priority&page=2", headers=HTMX))
    assert second.count("data-channel-name=") == 2
    assert 'data-channel-name="c0"' in second


# --- add and edit ---------------------------------------------------------------------------


def test_add_form_is_type_aware(people: People) -> None:
    client = people.client("admin")
    html = page_html(client.get("/channel/add", headers=ENGLISH))
    assert 'name="key"' in html and "gpt-4o-mini" in html  # OpenAI's model list
    assert 'placeholder="https://api.openai.com"' in html

    azure = page_html(client.get("/channel/type-fields?type=3", headers={**HTMX, **ENGLISH}))
    assert "<html" not in azure
    assert 'name="config_api_version"' in azure and "2024-10-21" in azure
    assert 'name="base_url"' in azure and "required" in azure

    aws = page_html(client.get("/channel/type-fields?type=33", headers={**HTMX, **ENGLISH}))
    assert 'name="aws_access_key"' in aws and 'name="aws_secret_key"' in aws
    assert 'name="config_region"' in aws and 'name="key"' not in aws

    vertex = page_html(client.get("/channel/type-fields?type=42", headers={**HTMX, **ENGLISH}))
    assert "Service account key (JSON)" in vertex
    assert 'name="config_vertex_ai_project_id"' in vertex

    cloudflare = page_html(client.get("/channel/type-fields?type=37", headers={**HTMX, **ENGLISH}))
    assert 'name="config_user_id"' in cloudflare and "Account ID" in cloudflare
    for model in MODELS_BY_CHANNEL_TYPE[37][:3]:
        assert f'value="{model}"' in cloudflare


def test_batch_add_creates_one_channel_per_key_line(people: People) -> None:
    response = people.client("root").post(
        "/channel/add",
        {
            "type": "1",
            "name": "batch",
            "key": "sk-one\n\nsk-two\n",
            "models": ["gpt-4o-mini", "gpt-4"],
            "custom_models": "my-model, gpt-4",
            "groups": ["default", "vip"],
            "model_mapping": '{"gpt-4": "gpt-4o"}',
            "priority": "2",
            "weight": "3",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/channel"
    created = list(Channel.objects.order_by("id"))
    assert [c.key for c in created] == ["sk-one", "sk-two"]
    first = created[0]
    assert (first.name, first.models, first.group) == (
        "batch",
        "gpt-4o-mini,gpt-4,my-model",
        "default,vip",
    )
    assert (first.priority, first.weight, first.model_mapping) == (2, 3, '{"gpt-4": "gpt-4o"}')
    assert Ability.objects.filter(channel=first).count() == 6  # 2 groups x 3 models


def test_bad_model_mapping_is_shown_in_the_form_and_nothing_is_created(people: People) -> None:
    client = people.client("admin")
    fields = {"type": "1", "key": "sk-x", "models": ["gpt-4"], "groups": ["default"]}
    bad_json = page_html(
        client.post("/channel/add", {**fields, "model_mapping": "{nope"}, headers=ENGLISH)
    )
    assert "Not valid JSON" in bad_json and 'name="model_mapping"' in bad_json
    not_strings = page_html(
        client.post("/channel/add", {**fields, "model_mapping": '{"a": 1}'}, headers=ENGLISH)
    )
    assert "Must be a JSON object of model names to model names" in not_strings
    missing_key = page_html(client.post("/channel/add", {**fields, "key": " "}, headers=ENGLISH))
    assert "Enter the key." in missing_key
    azure = page_html(client.post("/channel/add", {**fields, "type": "3"}, headers=ENGLISH))
    assert "This field is required." in azure  # Azure needs its endpoint
    assert not Channel.objects.exists()


def test_aws_and_vertex_keep_secrets_in_the_key_only(people: People) -> None:
    client = people.client("admin")
    client.post(
        "/channel/add",
        {
            "type": "33",
            "aws_access_key": "AKIA1",
            "aws_secret_key": "secret/1",
            "config_region": "us-west-2",
            "models": ["claude-3-haiku-20240307"],
        },
    )
    aws = Channel.objects.get(type=33)
    assert aws.key == "AKIA1|secret/1|us-west-2"
    assert json.loads(aws.config) == {"region": "us-west-2"}
    assert aws.group == "default"

    account = {"type": "service_account", "project_id": "p1", "private_key": "-----BEGIN\nx\n"}
    client.post(
        "/channel/add",
        {
            "type": "42",
            "key": json.dumps(account, indent=2),
            "config_region": "europe-west1",
            "custom_models": "gemini-1.5-pro",
        },
    )
    vertex = Channel.objects.get(type=42)  # one channel, though the JSON spans lines
    assert json.loads(vertex.key) == account and "\n" not in vertex.key.replace("\\n", "")
    assert json.loads(vertex.config) == {"region": "europe-west1"}


def test_edit_keeps_the_key_when_left_empty(people: People) -> None:
    channel = make_channel(name="old", key="sk-secret", models="gpt-4", group="default")
    client = people.client("admin")
    html = page_html(client.get(f"/channel/edit/{channel.pk}", headers=ENGLISH))
    assert "sk-secret" not in html and 'value="old"' in html
    assert "Leave empty to keep the current key." in html
    response = client.post(
        f"/channel/edit/{channel.pk}",
        {"type": "1", "name": "new", "key": "", "models": ["gpt-4", "gpt-4o"], "groups": []},
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.key, channel.models) == ("new", "sk-secret", "gpt-4,gpt-4o")
    assert channel.group == "default"
    assert people.client("admin").get("/channel/edit/999999").status_code == 404


def test_form_builds_the_api_body(people: People) -> None:
    options.set_option("GroupRatio", json.dumps({"default": 1, "vip": 1.5}))
    form = ChannelForm({"type": "37", "key": "tok", "config_user_id": "acc-1", "groups": ["vip"]})
    assert form.is_valid(), form.errors
    assert form.changes["config"] == '{"user_id": "acc-1"}'
    assert form.changes["group"] == "vip"
    assert [value for value, _label in form.fields["groups"].choices] == ["default", "vip"]


# --- row actions ---------------------------------------------------------------------------


def test_inline_priority_and_weight(people: People) -> None:
    channel = make_channel(name="row", models="gpt-4", priority=0, weight=1)
    client = people.client("admin")
    response = client.post(f"/channel/{channel.pk}/field", {"priority": "12"}, headers=HTMX)
    html = page_html(response)
    assert html.lstrip().startswith(f'<tr id="channel-{channel.pk}"')
    assert 'name="priority" value="12"' in html
    assert toast_of(response)["level"] == "success"
    channel.refresh_from_db()
    assert channel.priority == 12
    assert Ability.objects.get(channel=channel).priority == 12  # routing follows

    refused = client.post(f"/channel/{channel.pk}/field", {"weight": "-1"}, headers=HTMX)
    assert toast_of(refused)["level"] == "error"
    channel.refresh_from_db()
    assert channel.weight == 1

    plain = client.post(f"/channel/{channel.pk}/field", {"weight": "4"})
    assert plain.status_code == 302
    channel.refresh_from_db()
    assert channel.weight == 4


def test_disable_enable_and_delete(people: People) -> None:
    channel = make_channel(name="toggle")
    client = people.client("root")
    html = page_html(
        client.post(f"/channel/{channel.pk}/status", {"status": "2"}, headers={**HTMX, **ENGLISH})
    )
    assert "Disabled" in html and ">Enable<" in html
    channel.refresh_from_db()
    assert channel.status == ChannelStatus.MANUALLY_DISABLED
    client.post(f"/channel/{channel.pk}/status", {"status": "1"}, headers=HTMX)
    channel.refresh_from_db()
    assert channel.status == ChannelStatus.ENABLED

    confirm = page_html(client.get(f"/channel/{channel.pk}/delete", headers=ENGLISH))
    assert "Delete the channel “toggle”?" in confirm and "<html" in confirm
    gone = client.post(f"/channel/{channel.pk}/delete", headers=HTMX)
    assert gone.status_code == 200 and gone.content == b""
    assert not Channel.objects.filter(pk=channel.pk).exists()


def test_delete_disabled_asks_then_deletes_only_disabled(people: People) -> None:
    keep = make_channel(name="keep")
    manual = make_channel(name="manual", status=ChannelStatus.MANUALLY_DISABLED)
    auto = make_channel(name="auto", status=ChannelStatus.AUTO_DISABLED)
    client = people.client("admin")
    confirm = page_html(client.get("/channel/disabled/delete", headers=ENGLISH))
    assert "Delete every disabled channel" in confirm
    assert Channel.objects.count() == 3
    response = client.post("/channel/disabled/delete", headers={**HTMX, **ENGLISH})
    html = page_html(response)
    assert 'id="channel-table"' in html and "<html" not in html
    assert toast_of(response)["message"] == "2 disabled channels deleted."
    assert list(Channel.objects.values_list("pk", flat=True)) == [keep.pk]
    assert not Channel.objects.filter(pk__in=[manual.pk, auto.pk]).exists()


def test_test_one_shows_the_result_in_the_row(people: People, upstream: FakeOpenAI) -> None:
    good = make_channel(name="good", base_url=upstream.base_url, key="sk-upstream")
    bad = make_channel(name="bad", base_url=upstream.base_url, key="sk-wrong")
    client = people.client("admin")
    response = client.post(f"/channel/{good.pk}/test", headers={**HTMX, **ENGLISH})
    html = page_html(response)
    assert 'data-test-result="passed"' in html and "Passed in" in html
    assert toast_of(response)["message"].startswith("Test passed in")
    good.refresh_from_db()
    assert good.response_time > 0

    failed = client.post(f"/channel/{bad.pk}/test", headers={**HTMX, **ENGLISH})
    assert 'data-test-result="failed"' in page_html(failed)
    assert "401" in toast_of(failed)["message"]


def test_balance_one_and_all(people: People, upstream: FakeOpenAI) -> None:
    channel = make_channel(name="paid", base_url=upstream.base_url, key="sk-upstream")
    other = make_channel(name="anthropic", type=ChannelType.ANTHROPIC)
    client = people.client("admin")
    response = client.post(f"/channel/{channel.pk}/balance", headers={**HTMX, **ENGLISH})
    assert "$120.00" in page_html(response)
    assert toast_of(response)["message"] == "Balance: $120.00"
    channel.refresh_from_db()
    assert channel.balance == 120.0

    upstream.total_usage = 2000.0  # cents: $20 used
    everything = client.post("/channel/balance", headers={**HTMX, **ENGLISH})
    assert "$100.00" in page_html(everything)
    assert toast_of(everything)["message"] == "Balances updated: 1, failed: 0."
    other.refresh_from_db()
    assert other.balance_updated_time == 0


def test_test_all_answers_the_websocket_box_to_htmx(people: People) -> None:
    html = page_html(
        people.client("admin").post("/channel/test", {"scope": "disabled"}, headers=HTMX)
    )
    assert 'ws-connect="/ws/channel/test?scope=disabled"' in html and 'hx-ext="ws"' in html


@pytest.mark.parametrize("theme", ["default", "air"])
def test_both_themes_render_the_pages(people: People, theme: str) -> None:
    options.set_option("Theme", theme)
    channel = make_channel(name="themed")
    client = people.client("admin")
    for url in ("/channel", "/channel/add", f"/channel/edit/{channel.pk}"):
        html = page_html(client.get(url))
        assert f'data-theme="{theme}"' in html
        assert "hx-ws-2.min.js" in html


def test_pages_speak_chinese(people: People) -> None:
    make_channel(name="中文")
    client = people.client("admin")
    html = page_html(client.get("/channel", headers={"Accept-Language": "zh-hans"}))
    assert "测试全部渠道" in html and "删除已禁用渠道" in html and "优先级" in html
    form = page_html(client.get("/channel/add", headers={"Accept-Language": "zh-hans"}))
    assert "模型重定向" in form and "密钥" in form
