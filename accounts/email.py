"""Outgoing mail: an email backend configured by the SMTP options, and One API's messages.

The SMTP options change at run time (the admin edits them in the UI), so the backend reads
them on every send instead of from settings. `send` goes through `get_connection()`, which
honours `settings.EMAIL_BACKEND`: production uses `OptionsEmailBackend`, tests use locmem.
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Sequence
from html import escape
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage, EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.smtp import EmailBackend as SmtpBackend

from oneapi import options

logger = logging.getLogger(__name__)

CODE_VALID_MINUTES = 10
SMTP_NOT_CONFIGURED = "SMTP 服务器未配置"
SEND_FAILED = "邮件发送失败，请检查 SMTP 配置或稍后重试"
IMPLICIT_TLS_PORT = 465


class EmailNotConfigured(ImproperlyConfigured):
    pass


class SendFailed(Exception):
    """A message the API can show as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _StartTlsWhenOffered(smtplib.SMTP):
    """STARTTLS only when the server offers it (One API does the same), so servers without
    TLS on 25/587 still work; a server that offers it always gets the encrypted path."""

    def starttls(self, *args: Any, **kwargs: Any) -> tuple[int, bytes]:
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            return (0, b"STARTTLS not offered; staying in plain text")
        return super().starttls(*args, **kwargs)


class OptionsSmtpBackend(SmtpBackend):
    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        return smtplib.SMTP_SSL if self.use_ssl else _StartTlsWhenOffered


def smtp_backend(fail_silently: bool = False) -> OptionsSmtpBackend:
    """Django's SMTP backend for the current SMTP options; port 465 means implicit TLS."""
    host = options.get_str("SMTPServer").strip()
    if not host:
        raise EmailNotConfigured(SMTP_NOT_CONFIGURED)
    port = options.get_int("SMTPPort") or 587
    return OptionsSmtpBackend(
        host=host,
        port=port,
        username=options.get_str("SMTPAccount"),
        password=options.get_str("SMTPToken"),
        use_ssl=port == IMPLICIT_TLS_PORT,
        use_tls=port != IMPLICIT_TLS_PORT,  # only when offered: see _StartTlsWhenOffered
        timeout=getattr(settings, "EMAIL_TIMEOUT", None),
        fail_silently=fail_silently,
    )


class OptionsEmailBackend(BaseEmailBackend):
    """`settings.EMAIL_BACKEND`: every batch of messages opens an SMTP connection built from
    the options as they are at send time."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        if not email_messages:
            return 0
        try:
            backend = smtp_backend(fail_silently=self.fail_silently)
        except EmailNotConfigured:
            if self.fail_silently:
                return 0
            raise
        return backend.send_messages(email_messages) or 0


def from_address() -> str:
    return (
        options.get_str("SMTPFrom") or options.get_str("SMTPAccount") or settings.DEFAULT_FROM_EMAIL
    )


def _message(to: str, subject: str, text: str, html: str) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(subject, text, from_address(), [to])
    message.attach_alternative(html, "text/html")
    return message


def verification_message(to: str, code: str) -> EmailMultiAlternatives:
    system = options.get_str("SystemName")
    subject = f"{system}邮箱验证邮件"
    text = (
        f"您好，你正在进行{system}邮箱验证。\n"
        f"您的验证码为: {code}\n"
        f"验证码 {CODE_VALID_MINUTES} 分钟内有效，如果不是本人操作，请忽略。"
    )
    html = (
        f"<p>您好，你正在进行{escape(system)}邮箱验证。</p>"
        f"<p>您的验证码为: <strong>{escape(code)}</strong></p>"
        f"<p>验证码 {CODE_VALID_MINUTES} 分钟内有效，如果不是本人操作，请忽略。</p>"
    )
    return _message(to, subject, text, html)


def password_reset_message(to: str, link: str) -> EmailMultiAlternatives:
    system = options.get_str("SystemName")
    subject = f"{system}密码重置"
    text = (
        f"您好，你正在进行{system}密码重置。\n"
        f"请将下面的链接复制到浏览器中打开以重置密码：\n{link}\n"
        f"重置链接 {CODE_VALID_MINUTES} 分钟内有效，如果不是本人操作，请忽略。"
    )
    safe_link = escape(link, quote=True)
    html = (
        f"<p>您好，你正在进行{escape(system)}密码重置。</p>"
        f"<p>点击 <a href='{safe_link}'>此处</a> 进行密码重置。</p>"
        f"<p>如果链接无法点击，请尝试点击下面的链接或将其复制到浏览器中打开：<br> {safe_link} </p>"
        f"<p>重置链接 {CODE_VALID_MINUTES} 分钟内有效，如果不是本人操作，请忽略。</p>"
    )
    return _message(to, subject, text, html)


def send(message: EmailMessage) -> None:
    """Send one message through `settings.EMAIL_BACKEND`; failures become `SendFailed`."""
    try:
        get_connection().send_messages([message])
    except EmailNotConfigured:
        raise SendFailed(SMTP_NOT_CONFIGURED) from None
    except (OSError, smtplib.SMTPException) as error:
        # The details (server replies, addresses) go to the log, not to anonymous callers.
        logger.warning("sending mail to %s failed: %r", message.to, error)
        raise SendFailed(SEND_FAILED) from None
