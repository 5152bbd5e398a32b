"""Alerts to the site's root user: email and Message Pusher (One API's `notifyRootUser`).

`notify_root` sends at once and is what the Celery task runs. Everything else calls the
`channel_*` helpers (or `alert_root`), which only queue that task: a request or a channel test
never waits on SMTP or HTTP, and a broken alert path is logged, never raised to the caller.
"""

from __future__ import annotations

import logging

import httpx
from django.core.mail import EmailMessage

from accounts import email as mail
from accounts.models import Role, User
from oneapi import options

logger = logging.getLogger(__name__)

PUSHER_TIMEOUT_SECONDS = 10.0


def root_email() -> str:
    """The first root user's address ("" when none is set), as One API's GetRootUserEmail."""
    found = (
        User.objects.filter(role=Role.ROOT)
        .exclude(email="")
        .order_by("pk")
        .values_list("email", flat=True)
        .first()
    )
    return found or ""


def email_root(title: str, body: str) -> bool:
    """Mail the root user when both an address and an SMTP server are set."""
    address = root_email()
    if not address or not options.get_str("SMTPServer").strip():
        return False
    try:
        mail.send(EmailMessage(title, body, mail.from_address(), [address]))
    except mail.SendFailed as error:
        logger.warning("alert email %r to the root user failed: %s", title, error.message)
        return False
    return True


def push_message(title: str, body: str) -> bool:
    """POST to Message Pusher (songquanpeng/message-pusher) when MessagePusherAddress is set.

    The body is One API's: title, description and content (Markdown), and the token; the
    server answers `{"success": bool, "message": str}`."""
    address = options.get_str("MessagePusherAddress").strip()
    if not address:
        return False
    payload = {
        "title": title,
        "description": body,
        "content": body,
        "token": options.get_str("MessagePusherToken"),
    }
    try:
        response = httpx.post(address, json=payload, timeout=PUSHER_TIMEOUT_SECONDS)
        answer = response.json()
    except (httpx.HTTPError, ValueError) as error:
        logger.warning("alert %r to Message Pusher failed: %r", title, error)
        return False
    if not isinstance(answer, dict) or answer.get("success") is not True:
        message = answer.get("message") if isinstance(answer, dict) else answer
        logger.warning(
            "Message Pusher refused alert %r (HTTP %s): %s", title, response.status_code, message
        )
        return False
    return True


def notify_root(title: str, body: str) -> dict[str, bool]:
    """Send on every configured path; returns which ones delivered. Never raises."""
    sent = {"email": False, "message_pusher": False}
    try:
        sent["email"] = email_root(title, body)
    except Exception:  # an alert must never take its caller down
        logger.exception("alert email %r failed", title)
    try:
        sent["message_pusher"] = push_message(title, body)
    except Exception:
        logger.exception("alert %r to Message Pusher failed", title)
    if not any(sent.values()):
        logger.info("alert %r not delivered (no email or Message Pusher configured)", title)
    return sent


def alert_root(title: str, body: str) -> bool:
    """Queue `notify_root` on a Celery worker; False (logged) when the broker refused it."""
    from oneapi.notify_tasks import notify_root_task

    try:
        # No publish retries: an unreachable broker costs this alert, not the caller's time.
        notify_root_task.apply_async((title, body), retry=False)
    except Exception as error:
        logger.warning("could not queue alert %r: %r", title, error)
        return False
    return True


# One API's texts (monitor/channel.go).


def channel_disabled(channel_id: int, channel_name: str, reason: str) -> bool:
    return alert_root(
        f"通道「{channel_name}」（#{channel_id}）已被禁用",
        f"通道「{channel_name}」（#{channel_id}）已被禁用，原因：{reason}",
    )


def channel_disabled_by_metric(
    channel_id: int, success_rate: float, window_size: int, threshold: float
) -> bool:
    return alert_root(
        f"通道 #{channel_id} 已被禁用",
        f"该渠道在最近 {window_size} 次调用中成功率为 {success_rate * 100:.2f}%，"
        f"低于阈值 {threshold * 100:.2f}%，因此被系统自动禁用。",
    )


def channel_enabled(channel_id: int, channel_name: str) -> bool:
    return alert_root(
        f"通道「{channel_name}」（#{channel_id}）已被启用",
        f"通道「{channel_name}」（#{channel_id}）已被启用",
    )


def channel_test_too_slow(channel_id: int, channel_name: str, reason: str) -> bool:
    """A slow test with AutomaticDisableChannelEnabled off: the admin is told instead."""
    return alert_root(f"渠道 {channel_name} （{channel_id}）测试超时", reason)
