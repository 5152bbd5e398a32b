"""The console's websockets, through Channels' communicator and the real consumers, session
authentication and channel layer: the live all-channel test against a fake upstream, and
log rows the usage write-back publishes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from accounts.models import Role, User
from billing import journal, log_stream
from billing.models import ApiKey
from channels_mgmt.models import Channel, ChannelStatus
from dashboard.routing import websocket_urlpatterns
from oneapi import options
from relay.runtime import Runtime
from tests.factories import make_channel, make_user
from tests.fakes.openai_upstream import FakeOpenAI

pytestmark = pytest.mark.django_db(transaction=True)

application = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


def session_headers(user: User | None) -> list[tuple[bytes, bytes]]:
    """What a signed-in browser sends: its session cookie (English pages)."""
    headers = [(b"accept-language", b"en")]
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return headers


def communicator(path: str, user: User | None) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, path, headers=session_headers(user))


async def receive_all(socket: WebsocketCommunicator, timeout: float = 30) -> list[str]:
    """Every message until the server closes the socket."""
    messages = []
    while True:
        event = await socket.receive_output(timeout)
        if event["type"] == "websocket.close":
            assert event.get("code", 1000) == 1000
            return messages
        messages.append(event["text"])


# --- the all-channel test -----------------------------------------------------------------


@pytest.mark.parametrize("role", ["anonymous", "user"])
def test_channel_tests_refuse_non_admins(role: str) -> None:
    channel = make_channel(name="untouched")
    user = None if role == "anonymous" else make_user(username="plain")

    socket = communicator("/ws/channel/test", user)

    async def scenario() -> tuple[bool, Any]:
        connected, code = await socket.connect()
        await socket.disconnect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4403)
    channel.refresh_from_db()
    assert (channel.test_time, channel.response_time) == (0, 0)


def test_test_all_streams_each_result_to_its_row(upstream: FakeOpenAI) -> None:
    options.set_option("AutomaticDisableChannelEnabled", "true")
    admin = make_user(username="boss", role=Role.ADMIN)
    good = make_channel(name="good", base_url=upstream.base_url, key="sk-upstream")
    bad = make_channel(name="bad", base_url=upstream.base_url, key="sk-wrong")

    socket = communicator("/ws/channel/test?scope=all", admin)

    async def scenario() -> list[str]:
        connected, _ = await socket.connect()
        assert connected
        return await receive_all(socket)

    messages = async_to_sync(scenario)()

    # Newest first, one message per channel as it finishes, then the summary.
    assert len(messages) == 3
    first, second, summary = messages
    assert f'<td id="channel-{bad.pk}-response"' in first and 'hx-swap-oob="true"' in first
    assert 'data-test-result="failed"' in first and "401" in first
    assert f'id="channel-{bad.pk}-status"' in first and "Disabled automatically" in first
    assert "1 channel tested." in first
    assert f'<td id="channel-{good.pk}-response"' in second
    assert 'data-test-result="passed"' in second and "Passed in" in second
    assert "2 channels tested." in second
    assert 'id="channel-test-run"' in summary and "Test finished: 2 tested, 1 failed." in summary
    assert f"Disabled: {bad.pk}." in summary
    bad.refresh_from_db()
    good.refresh_from_db()
    assert bad.status == ChannelStatus.AUTO_DISABLED and good.response_time > 0


def test_disabled_scope_tests_only_disabled_channels(upstream: FakeOpenAI) -> None:
    options.set_option("AutomaticEnableChannelEnabled", "true")
    admin = make_user(username="boss", role=Role.ROOT)
    make_channel(name="on", base_url=upstream.base_url)
    off = make_channel(name="off", base_url=upstream.base_url, status=ChannelStatus.AUTO_DISABLED)

    socket = communicator("/ws/channel/test?scope=disabled", admin)

    async def scenario() -> list[str]:
        assert (await socket.connect())[0]
        return await receive_all(socket)

    first, summary = async_to_sync(scenario)()
    assert f'id="channel-{off.pk}-status"' in first and "Enabled" in first
    assert (
        "Test finished: 1 tested, 0 failed." in summary and f"Enabled again: {off.pk}." in summary
    )
    off.refresh_from_db()
    assert off.status == ChannelStatus.ENABLED


# --- following the logs -------------------------------------------------------------------


@pytest.fixture
def writeback_runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime of this test, flushed by hand: the same write-back hooks as a server's."""
    runtime = Runtime(tmp_path / "journal", interval=3600)
    try:
        yield runtime
    finally:
        runtime.journal.close()


def usage(user: User, key: ApiKey, model: str) -> journal.UsageRecord:
    request_id = uuid.uuid4().hex
    log = journal.consume_log_fields(
        user_id=user.pk,
        username=user.username,
        token_name=key.name,
        model_name=model,
        quota=750,
        prompt_tokens=10,
        completion_tokens=5,
        channel_id=7,
        request_id=request_id,
        elapsed_ms=1500,
        is_stream=True,
        content="live",
    )
    return journal.UsageRecord(request_id, user.pk, key.pk, False, 7, 750, log)


def test_follow_delivers_new_logs_to_their_owner_and_to_admins(
    writeback_runtime: Runtime,
) -> None:
    alice = make_user(username="alice", quota=1_000_000)
    bob = make_user(username="bob", quota=1_000_000)
    admin = make_user(username="boss", role=Role.ADMIN)
    alice_key = ApiKey.objects.create(user=alice, key="a" * 48, name="alice key")
    bob_key = ApiKey.objects.create(user=bob, key="b" * 48, name="bob key")

    sockets = {
        "alice": communicator("/ws/log", alice),
        "bob_filtered": communicator("/ws/log?model_name=gpt-4o", bob),
        "admin": communicator("/ws/log", admin),
        "admin_bob_only": communicator("/ws/log?username=bob", admin),
    }
    records = [usage(alice, alice_key, "gpt-3.5-turbo"), usage(bob, bob_key, "gpt-4o-mini")]

    async def scenario() -> dict[str, Any]:
        for socket in sockets.values():
            assert (await socket.connect())[0]
        for record in records:
            writeback_runtime.journal.append(record)
        assert await sync_to_async(writeback_runtime.flush)() == 2
        received: dict[str, Any] = {}
        for name, socket in sockets.items():
            if name == "bob_filtered":
                received[name] = await socket.receive_nothing(timeout=1)
            else:
                received[name] = await socket.receive_from(timeout=10)
                received[name + "_more"] = await socket.receive_nothing(timeout=0.3)
            await socket.disconnect()
        return received

    received = async_to_sync(scenario)()

    alice_html = received["alice"]
    assert '<tbody id="log-rows" hx-swap-oob="afterbegin">' in alice_html
    assert 'data-log-model="gpt-3.5-turbo"' in alice_html and "alice key" in alice_html
    assert "bob" not in alice_html and "gpt-4o-mini" not in alice_html
    assert '<tr id="log-empty" hx-swap-oob="delete">' in alice_html
    assert received["alice_more"] is True
    assert received["bob_filtered"] is True  # bob follows gpt-4o only
    admin_html = received["admin"]
    assert admin_html.index('"gpt-4o-mini"') < admin_html.index('"gpt-3.5-turbo"')  # newest on top
    assert "<td>alice</td>" in admin_html and "<td>bob</td>" in admin_html
    assert "gpt-4o-mini" in received["admin_bob_only"]
    assert "gpt-3.5-turbo" not in received["admin_bob_only"]


def test_a_user_cannot_follow_others_by_filtering_on_their_name(
    writeback_runtime: Runtime,
) -> None:
    alice = make_user(username="alice")
    bob = make_user(username="bob")
    bob_key = ApiKey.objects.create(user=bob, key="b" * 48, name="bob key")

    anonymous = communicator("/ws/log", None)
    socket = communicator("/ws/log?username=bob", alice)
    record = usage(bob, bob_key, "gpt-4o")

    async def scenario() -> tuple[bool, bool]:
        anonymous_connected, _ = await anonymous.connect()
        assert (await socket.connect())[0]
        writeback_runtime.journal.append(record)
        await sync_to_async(writeback_runtime.flush)()
        nothing = await socket.receive_nothing(timeout=1)
        await socket.disconnect()
        return anonymous_connected, nothing

    assert async_to_sync(scenario)() == (False, True)


def test_logs_page_offers_follow_with_its_filters(client: Client) -> None:
    admin = make_user(username="boss", role=Role.ADMIN)
    client.force_login(admin)
    html = client.get("/log?follow=1&model_name=gpt-4o&username=bob&start=").content.decode()
    assert 'ws-connect="/ws/log?model_name=gpt-4o&amp;username=bob"' in html
    assert 'id="log-follow-toggle" name="follow" value="1" checked' in html
    plain = client.get("/log", headers={"HX-Request": "true"}).content.decode()
    assert "ws-connect" not in plain and "<html" not in plain
    assert Channel.objects.count() == 0


def test_published_logs_reach_followers_from_another_thread() -> None:
    """The write-back's thread is not the server's loop: with the in-memory layer the send
    goes through the loop the consumer recorded, with Redis through the module's own loop."""
    alice = make_user(username="alice")
    socket = communicator("/ws/log?type=2", alice)
    row = {"user_id": alice.pk, "username": "alice", "type": 2, "model_name": "from-thread"}
    other_type = {**row, "type": 5, "model_name": "a-test-log"}

    async def scenario() -> str:
        assert (await socket.connect())[0]
        sent = await sync_to_async(log_stream.publish_logs, thread_sensitive=False)(
            [other_type, row]
        )
        assert sent is not None
        await sync_to_async(sent.result, thread_sensitive=False)(10)
        html = await socket.receive_from(timeout=10)
        await socket.disconnect()
        return html

    html = async_to_sync(scenario)()
    assert 'data-log-model="from-thread"' in html and "a-test-log" not in html
