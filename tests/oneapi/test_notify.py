"""Alerts to the root user: Message Pusher (a real local webhook server) and email (locmem)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail

from accounts.models import Role
from oneapi import notify, notify_tasks
from oneapi.options import set_option
from tests.conftest import free_port
from tests.factories import make_user
from tests.fakes.webhook_server import WebhookServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer() as server:
        yield server


@pytest.fixture
def root_with_email() -> None:
    make_user(username="root", role=Role.ROOT, email="root@example.com")
    set_option("SMTPServer", "smtp.example.com")
    set_option("SMTPFrom", "gateway@example.com")


@pytest.fixture
def pusher(hook: WebhookServer) -> WebhookServer:
    set_option("MessagePusherAddress", hook.url)
    set_option("MessagePusherToken", "pusher-token")
    return hook


def test_email_goes_to_the_root_user(root_with_email: None) -> None:
    make_user(username="admin", role=Role.ADMIN, email="admin@example.com")

    sent = notify.notify_root("通道「a」（#1）已被禁用", "原因：余额不足")

    assert sent == {"email": True, "message_pusher": False}
    [message] = mail.outbox
    assert message.to == ["root@example.com"]
    assert message.from_email == "gateway@example.com"
    assert message.subject == "通道「a」（#1）已被禁用"
    assert message.body == "原因：余额不足"


def test_no_email_without_smtp_or_without_an_address() -> None:
    root = make_user(username="root", role=Role.ROOT, email="root@example.com")
    assert notify.notify_root("t", "b")["email"] is False  # no SMTPServer

    set_option("SMTPServer", "smtp.example.com")
    root.email = ""
    root.save()
    assert notify.notify_root("t", "b")["email"] is False  # no address
    assert mail.outbox == []


def test_message_pusher_gets_one_api_body(pusher: WebhookServer) -> None:
    sent = notify.notify_root("通道 #3 已被禁用", "成功率 10.00%")

    assert sent == {"email": False, "message_pusher": True}
    [received] = pusher.received
    assert received.method == "POST"
    assert received.path == "/push/root"
    assert received.headers["content-type"] == "application/json"
    assert received.json == {
        "title": "通道 #3 已被禁用",
        "description": "成功率 10.00%",
        "content": "成功率 10.00%",
        "token": "pusher-token",
    }


def test_both_paths_when_both_are_configured(root_with_email: None, pusher: WebhookServer) -> None:
    assert notify.notify_root("t", "b") == {"email": True, "message_pusher": True}
    assert len(mail.outbox) == 1
    assert len(pusher.received) == 1


@pytest.mark.parametrize(
    ("status", "reply"),
    [
        (200, {"success": False, "message": "invalid token"}),
        (500, b"<html>oops</html>"),
        (200, ["not", "an", "object"]),
    ],
)
def test_a_refusing_pusher_is_logged_not_raised(
    pusher: WebhookServer, status: int, reply: Any, caplog: pytest.LogCaptureFixture
) -> None:
    pusher.status, pusher.reply = status, reply

    assert notify.notify_root("t", "b") == {"email": False, "message_pusher": False}
    assert "Message Pusher" in caplog.text


def test_an_unreachable_pusher_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    set_option("MessagePusherAddress", f"http://127.0.0.1:{free_port()}/push")

    assert notify.notify_root("t", "b")["message_pusher"] is False
    assert "Message Pusher failed" in caplog.text


def test_a_slow_pusher_times_out(pusher: WebhookServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "PUSHER_TIMEOUT_SECONDS", 0.2)
    pusher.delay = 2.0

    assert notify.notify_root("t", "b")["message_pusher"] is False


def test_a_failing_mail_server_does_not_stop_the_pusher(
    root_with_email: None, pusher: WebhookServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise notify.mail.SendFailed("boom")

    monkeypatch.setattr(notify.mail, "send", broken)

    assert notify.notify_root("t", "b") == {"email": False, "message_pusher": True}


def test_even_a_bug_is_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def bug(*args: Any) -> bool:
        raise RuntimeError("bug")

    monkeypatch.setattr(notify, "email_root", bug)
    monkeypatch.setattr(notify, "push_message", bug)

    assert notify.notify_root("t", "b") == {"email": False, "message_pusher": False}


def test_the_task_sends(pusher: WebhookServer) -> None:
    assert notify_tasks.notify_root_task("t", "b") == {"email": False, "message_pusher": True}
    assert pusher.received[0].json["title"] == "t"


# ---------------------------------------------------------------------- queuing


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, str], dict]]:
    calls: list[tuple[tuple[str, str], dict]] = []
    monkeypatch.setattr(
        notify_tasks.notify_root_task,
        "apply_async",
        lambda args, **options: calls.append((args, options)),
    )
    return calls


def test_alerts_are_queued_not_sent(
    queued: list, root_with_email: None, pusher: WebhookServer
) -> None:
    assert notify.alert_root("t", "b") is True

    assert queued == [(("t", "b"), {"retry": False})]
    assert mail.outbox == [] and pusher.received == []


def test_a_broker_outage_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(notify_tasks.notify_root_task, "apply_async", down)

    assert notify.alert_root("t", "b") is False
    assert "could not queue alert" in caplog.text


def test_channel_texts_are_one_api_s(queued: list) -> None:
    notify.channel_disabled(4, "openai", "额度不足")
    notify.channel_disabled_by_metric(4, 0.3, 10, 0.8)
    notify.channel_enabled(4, "openai")
    notify.channel_test_too_slow(4, "openai", "响应时间 6.00s 超过阈值 5.00s")

    assert [args for args, _ in queued] == [
        ("通道「openai」（#4）已被禁用", "通道「openai」（#4）已被禁用，原因：额度不足"),
        (
            "通道 #4 已被禁用",
            "该渠道在最近 10 次调用中成功率为 30.00%，低于阈值 80.00%，因此被系统自动禁用。",
        ),
        ("通道「openai」（#4）已被启用", "通道「openai」（#4）已被启用"),
        ("渠道 openai （4）测试超时", "响应时间 6.00s 超过阈值 5.00s"),
    ]
