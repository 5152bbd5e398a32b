"""Mail through a real SMTP server (aiosmtpd): the backend built from the SMTP options at send
time, plain with AUTH, STARTTLS when offered, implicit TLS on 465, and the API route on top."""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts import email as mail
from oneapi import options
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

ACCOUNT, PASSWORD = "robot@gateway.test", "smtp-token"


@dataclass
class Delivered:
    mail_from: str
    rcpt_tos: list[str]
    message: Message
    tls: bool
    login: bytes | None


@dataclass
class Inbox:
    messages: list[Delivered] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            Delivered(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.original_content, policy=policy.default),
                # STARTTLS sets session.ssl; implicit TLS shows on the transport.
                session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
                session.auth_data if session.authenticated else None,
            )
        )
        return "250 Message accepted for delivery"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        ACCOUNT.encode(),
        PASSWORD.encode(),
    )
    return AuthResult(success=ok, handled=False, auth_data=data.login if ok else None)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, certificate))
    return context


@pytest.fixture
def real_backend(settings) -> None:
    """Undo pytest-django's locmem backend: mail goes through the SMTP options."""
    settings.EMAIL_BACKEND = "accounts.email.OptionsEmailBackend"
    cache.clear()


def point_options_at(port: int, host: str = "127.0.0.1", token: str = PASSWORD) -> None:
    options.set_option("SMTPServer", host)
    options.set_option("SMTPPort", str(port))
    options.set_option("SMTPAccount", ACCOUNT)
    options.set_option("SMTPToken", token)


def run_server(inbox: Inbox, port: int, **kwargs: Any) -> Controller:
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=authenticate, **kwargs
    )
    controller.start()
    return controller


@pytest.fixture
def plain_server(real_backend: None) -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = run_server(inbox, port, auth_require_tls=False)
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_verification_code_is_delivered_over_smtp(plain_server: tuple[Inbox, int]) -> None:
    inbox, port = plain_server
    point_options_at(port)
    options.set_option("SystemName", "Gateway")

    body = APIClient().get("/api/verification", {"email": "new@example.com"}).json()

    assert body == {"success": True, "message": ""}
    [delivered] = inbox.messages
    assert delivered.mail_from == ACCOUNT  # SMTPFrom is empty: the account is the sender
    assert delivered.rcpt_tos == ["new@example.com"]
    assert delivered.login == ACCOUNT.encode()
    assert not delivered.tls  # the server offered no STARTTLS, so plain text is used
    message = delivered.message
    assert message["Subject"] == "Gateway邮箱验证邮件"
    assert isinstance(message, EmailMessage)
    text = message.get_body(("plain",)).get_content()
    assert re.search(r"您的验证码为: \w{6}", text)


def test_options_are_read_at_send_time(plain_server: tuple[Inbox, int]) -> None:
    inbox, port = plain_server
    point_options_at(port, token="wrong")
    failed = APIClient().get("/api/verification", {"email": "a@example.com"}).json()
    assert failed == {"success": False, "message": mail.SEND_FAILED}

    options.set_option("SMTPToken", PASSWORD)
    options.set_option("SMTPFrom", "One API <noreply@gateway.test>")
    assert APIClient().get("/api/verification", {"email": "a@example.com"}).json()["success"]
    assert inbox.messages[-1].mail_from == "noreply@gateway.test"


def test_starttls_is_used_when_offered(
    real_backend: None, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client verifies the server: trust the test certificate like a system CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    inbox, port = Inbox(), free_port()
    controller = run_server(
        inbox, port, tls_context=server_context(certificate), require_starttls=True
    )
    try:
        point_options_at(port, host="localhost")
        mail.send(mail.verification_message("tls@example.com", "abc123"))
    finally:
        controller.stop()
    [delivered] = inbox.messages
    assert delivered.tls
    assert delivered.login == ACCOUNT.encode()


def port_465_free() -> bool:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", mail.IMPLICIT_TLS_PORT))
        return True
    except OSError:
        return False


def test_port_465_means_implicit_tls(
    real_backend: None, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    point_options_at(mail.IMPLICIT_TLS_PORT)
    backend = mail.smtp_backend()
    assert backend.use_ssl and not backend.use_tls
    point_options_at(587)
    assert not mail.smtp_backend().use_ssl

    if not port_465_free():
        pytest.skip("port 465 cannot be bound here (needs root and a free port)")
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    inbox = Inbox()
    # aiosmtpd only counts STARTTLS as TLS for AUTH; the connection here is TLS from the start.
    controller = run_server(
        inbox,
        mail.IMPLICIT_TLS_PORT,
        ssl_context=server_context(certificate),
        auth_require_tls=False,
    )
    try:
        point_options_at(mail.IMPLICIT_TLS_PORT, host="localhost")
        mail.send(mail.verification_message("ssl@example.com", "abc123"))
    finally:
        controller.stop()
    [delivered] = inbox.messages
    assert delivered.tls
    assert delivered.login == ACCOUNT.encode()
    assert delivered.rcpt_tos == ["ssl@example.com"]


def test_an_untrusted_certificate_is_refused(
    real_backend: None, certificate: tuple[Path, Path]
) -> None:
    inbox, port = Inbox(), free_port()
    controller = run_server(
        inbox, port, tls_context=server_context(certificate), require_starttls=True
    )
    try:
        point_options_at(port, host="localhost")
        with pytest.raises(mail.SendFailed):
            mail.send(mail.verification_message("tls@example.com", "abc123"))
    finally:
        controller.stop()
    assert inbox.messages == []
