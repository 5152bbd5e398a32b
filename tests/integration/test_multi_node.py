"""Two gateway nodes on one database and one Redis behave as one system.

Node A (`NODE_TYPE=master`) and node B (`NODE_TYPE=slave`) are real Daphne processes, each with
a data directory (usage journal) of its own, both on this run's test database and Redis and
with the same `SESSION_SECRET`, as `deploy/multi-node/` runs them behind nginx. A request may
land on either node, so what one node writes the other must honour at once: disabled keys and
channels and banned users (cache invalidations over Redis pub/sub), sessions, email codes and
`/api` rate-limit windows (the Django cache on Redis), and usage billing (each node's journal,
written back to the shared database).

`SYNC_FREQUENCY` is an hour, so the periodic full reload cannot stand in for an invalidation
that never arrived. The Redis database is emptied before each test (rate-limit windows,
sessions, codes). SQLite, the embedded default, is single-node by design: there this module
skips, as it does without Redis; with `REQUIRE_SERVICES=1` an unreachable Redis fails it.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.cache import cache
from django.db import connection, transaction

from accounts.auth_services import WRONG_CODE
from accounts.models import Role, User, UserStatus
from billing.models import ApiKey, KeyStatus, Log
from channels_mgmt.models import ChannelStatus
from oneapi import options
from oneapi.api import USER_BANNED
from tests.conftest import free_port, require_service
from tests.factories import make_user
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    CHAT_MODEL,
    CHAT_QUOTA,
    DaphneServer,
    World,
    assert_billed,
    make_world,
    post_chat,
    start_daphne,
    text_quota,
    wait_for_routing,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Small enough to reach in a test, large enough for every other test's few `/api` calls
# (the window is emptied before each test).
API_RATE_LIMIT = 12
# How long another node may keep serving what one node has just disabled.
PROPAGATION_SECONDS = 1.0
SMTP_ACCOUNT, SMTP_PASSWORD = "robot@gateway.test", "smtp-token"
PASSWORD = "password123"


@dataclass
class Cluster:
    a: DaphneServer  # NODE_TYPE=master
    b: DaphneServer  # NODE_TYPE=slave

    def __iter__(self) -> Iterator[DaphneServer]:
        return iter((self.a, self.b))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shared_redis_url() -> str:
    """The Redis both nodes share; skips (or fails) before any process starts."""
    if connection.settings_dict["ENGINE"].endswith("sqlite3"):
        pytest.skip(
            "multi-node needs PostgreSQL or MySQL (SQL_DSN): SQLite, the embedded default, "
            "is single-node by design"
        )
    url = settings.REDIS_CONN_STRING
    if not url:
        pytest.skip(
            "multi-node needs Redis (REDIS_CONN_STRING): nodes share sessions, email codes, "
            "rate-limit windows and cache invalidations through it"
        )
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        require_service("Redis", parts.hostname or "127.0.0.1", parts.port or 6379)
    return url


@pytest.fixture(scope="module")
def cluster(
    shared_redis_url: str,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    shared = {
        "SESSION_SECRET": secrets.token_urlsafe(48),
        "REDIS_CONN_STRING": shared_redis_url,
        "GLOBAL_API_RATE_LIMIT": str(API_RATE_LIMIT),
        "SYNC_FREQUENCY": "3600",
        "DEBUG": "false",
    }
    directories = {
        node_type: tmp_path_factory.mktemp(f"node-{node_type}") for node_type in ("master", "slave")
    }
    started: list[DaphneServer] = []
    with django_db_blocker.unblock():
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures: list[Future[DaphneServer]] = [
                pool.submit(start_daphne, directory, NODE_TYPE=node_type, **shared)
                for node_type, directory in directories.items()
            ]
        failures: list[BaseException] = []
        for future in futures:
            error = future.exception()
            if error is None:
                started.append(future.result())
            else:
                failures.append(error)
        if failures:
            for node in started:
                node.stop()
            raise failures[0]
    try:
        yield Cluster(*started)
    finally:
        with django_db_blocker.unblock():
            for node in started:
                node.stop()
            Log.objects.all().delete()  # written by the final flushes, after the last cleanup


@pytest.fixture
def nodes(cluster: Cluster, transactional_db: None) -> Cluster:
    """The cluster, with the shared Redis emptied: no rate-limit window, session or code of
    an earlier test."""
    cache.clear()
    for node in cluster:
        assert node.process.poll() is None, f"a node died; its output:\n{node.output()}"
    return cluster


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream") as fake:
        yield fake


@pytest.fixture
def world(nodes: Cluster, upstream: FakeOpenAI) -> World:
    """A user, key and channel that both nodes route."""
    upstream.reset()
    world = make_world(upstream, models=CHAT_MODEL)
    for node in nodes:
        wait_for_routing(node.base_url, world)
    upstream.reset()
    return world


# --------------------------------------------------------------------------- helpers


def with_access_token(user: User) -> str:
    """Give `user` a system access token (the `/api` credential) and return it."""
    user.access_token = uuid.uuid4().hex
    user.save(update_fields=["access_token"])
    return user.access_token


def make_admin() -> str:
    """A new admin; returns its access token."""
    return with_access_token(make_user(role=Role.ADMIN))


def api(
    node: DaphneServer, method: str, path: str, token: str = "", **kwargs: Any
) -> httpx.Response:
    headers = {"Authorization": token} if token else {}
    return httpx.request(method, node.base_url + path, headers=headers, timeout=30, **kwargs)


def succeeded(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, (response.status_code, response.text)
    body = response.json()
    assert body["success"] is True, body
    return body


def first_refusal(
    attempt: Callable[[], httpx.Response], what: str, within: float = PROPAGATION_SECONDS
) -> httpx.Response:
    """Repeat `attempt` (timed from now) until it is answered with anything but 200."""
    start = time.monotonic()
    served = 0
    while True:
        response = attempt()
        elapsed = time.monotonic() - start
        if response.status_code != 200:
            return response
        served += 1
        if elapsed >= within:
            raise AssertionError(
                f"{what}: still served {elapsed:.2f}s later ({served} requests), "
                f"expected a refusal within {within}s"
            )
        time.sleep(0.02)


def error_message(response: httpx.Response) -> str:
    return response.json()["error"]["message"]


def hashed_password(password: str) -> str:
    """A hash the nodes can check (the test settings hash with MD5, which they do not know)."""
    hasher = PBKDF2PasswordHasher()
    return hasher.encode(password, hasher.salt())


# --------------------------------------------------------------------------- invalidations


def test_a_key_disabled_on_one_node_is_refused_by_the_other(nodes: Cluster, world: World) -> None:
    owner = with_access_token(world.user)
    assert post_chat(nodes.b.base_url, world).status_code == 200  # B holds the key in memory

    response = api(
        nodes.a,
        "PUT",
        "/api/token/?status_only=1",
        owner,
        json={"id": world.key.pk, "status": KeyStatus.DISABLED},
    )

    assert succeeded(response)["data"]["status"] == KeyStatus.DISABLED
    refused = first_refusal(lambda: post_chat(nodes.b.base_url, world), "the disabled key on B")
    assert refused.status_code == 401, refused.text
    assert error_message(refused).startswith("该令牌状态不可用")
    # And on A itself, of course.
    assert post_chat(nodes.a.base_url, world).status_code == 401


def test_a_channel_disabled_on_one_node_is_not_routed_by_the_other(
    nodes: Cluster, world: World, upstream: FakeOpenAI
) -> None:
    admin = make_admin()
    assert post_chat(nodes.b.base_url, world).status_code == 200  # B routes to the channel
    assert len(upstream.requests) == 1

    response = api(
        nodes.a,
        "PUT",
        "/api/channel/",
        admin,
        json={"id": world.channel.pk, "status": ChannelStatus.MANUALLY_DISABLED},
    )

    assert succeeded(response)["data"]["status"] == ChannelStatus.MANUALLY_DISABLED
    refused = first_refusal(lambda: post_chat(nodes.b.base_url, world), "the disabled channel")
    assert refused.status_code == 503, refused.text
    assert error_message(refused).startswith(f"当前分组 default 下对于模型 {CHAT_MODEL} 无可用渠道")
    # From then on nothing reaches the channel through B.
    count = len(upstream.requests)
    assert post_chat(nodes.b.base_url, world).status_code == 503
    assert len(upstream.requests) == count


def test_a_user_banned_on_one_node_is_refused_by_the_other(nodes: Cluster, world: World) -> None:
    admin = make_admin()
    user_token = with_access_token(world.user)
    assert post_chat(nodes.b.base_url, world).status_code == 200  # B holds the user in memory
    assert succeeded(api(nodes.b, "GET", "/api/user/self", user_token))

    response = api(
        nodes.a,
        "POST",
        "/api/user/manage",
        admin,
        json={"username": world.user.username, "action": "disable"},
    )

    assert succeeded(response)["data"]["status"] == UserStatus.DISABLED
    refused = first_refusal(lambda: post_chat(nodes.b.base_url, world), "the banned user")
    assert refused.status_code == 403, refused.text
    assert error_message(refused).startswith("用户已被封禁")
    assert api(nodes.b, "GET", "/api/user/self", user_token).json() == {
        "success": False,
        "message": USER_BANNED,
    }


# --------------------------------------------------------------------------- shared state


def test_a_session_started_on_one_node_works_on_the_other(nodes: Cluster) -> None:
    username = f"mn{secrets.token_hex(4)}"
    make_user(username=username, password=PASSWORD)
    User.objects.filter(username=username).update(password=hashed_password(PASSWORD))

    login = api(
        nodes.a, "POST", "/api/user/login", json={"username": username, "password": PASSWORD}
    )

    assert succeeded(login)["data"]["username"] == username
    session = login.cookies.get("session")
    assert session, login.headers
    cookie = {"Cookie": f"session={session}"}
    me = httpx.get(f"{nodes.b.base_url}/api/user/self", headers=cookie, timeout=30)
    assert succeeded(me)["data"]["username"] == username
    # Logging out on B ends the session on A too.
    succeeded(httpx.get(f"{nodes.b.base_url}/api/user/logout", headers=cookie, timeout=30))
    after = httpx.get(f"{nodes.a.base_url}/api/user/self", headers=cookie, timeout=30)
    assert after.status_code == 401, after.text


@dataclass
class Inbox:
    messages: list[EmailMessage] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append(cast(EmailMessage, message))
        return "250 Message accepted for delivery"

    def message_to(self, address: str) -> EmailMessage | None:
        return next((m for m in self.messages if address in str(m["To"])), None)


def authenticate_smtp(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    accepted = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_ACCOUNT.encode(),
        SMTP_PASSWORD.encode(),
    )
    return AuthResult(success=accepted, handled=False)


@pytest.fixture
def inbox(nodes: Cluster) -> Iterator[Inbox]:
    """A local SMTP server that both nodes send through, with email verification on."""
    received = Inbox()
    controller = Controller(
        received,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticate_smtp,
        auth_require_tls=False,
    )
    controller.start()
    configured = {
        "SMTPServer": "127.0.0.1",
        "SMTPPort": str(controller.port),
        "SMTPAccount": SMTP_ACCOUNT,
        "SMTPToken": SMTP_PASSWORD,
        "SMTPFrom": SMTP_ACCOUNT,
        "EmailVerificationEnabled": "true",  # last: a node showing it has all of them
    }
    try:
        with transaction.atomic():
            for key, value in configured.items():
                options.set_option(key, value)
        for node in nodes:
            wait_until(
                lambda node=node: httpx.get(f"{node.base_url}/api/status", timeout=10).json()[
                    "data"
                ]["email_verification"],
                timeout=5,
                what=f"{node.base_url} to load the SMTP options",
            )
        yield received
    finally:
        # Back to the defaults, announced to the nodes (emptying the database announces
        # nothing, and they outlive this test).
        defaults = options.default_options()
        with transaction.atomic():
            for key in configured:
                options.set_option(key, defaults[key])
        controller.stop()


def test_an_email_code_sent_by_one_node_is_accepted_by_the_other(
    nodes: Cluster, inbox: Inbox
) -> None:
    email = f"mn-{secrets.token_hex(4)}@example.com"

    succeeded(api(nodes.a, "GET", "/api/verification", params={"email": email}))

    message = wait_until(lambda: inbox.message_to(email), timeout=5, what="the verification mail")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    found = re.search(r"验证码为: (\S+)", body.get_content())
    assert found, body.get_content()
    code = found.group(1)
    username = f"mn{secrets.token_hex(4)}"
    registration = {
        "username": username,
        "password": PASSWORD,
        "email": email,
        "verification_code": code,
    }
    succeeded(api(nodes.b, "POST", "/api/user/register", json=registration))
    assert User.objects.get(username=username).email == email
    # The code was used up on B: A refuses it now.
    again = {**registration, "username": f"mn{secrets.token_hex(4)}"}
    assert api(nodes.a, "POST", "/api/user/register", json=again).json() == {
        "success": False,
        "message": WRONG_CODE,
    }


def test_the_api_rate_limit_window_is_shared_by_the_nodes(nodes: Cluster) -> None:
    """Half the limit on each node exhausts it: the count is one, not one per node."""
    for number in range(API_RATE_LIMIT):
        node = nodes.a if number % 2 == 0 else nodes.b
        response = api(node, "GET", "/api/notice")
        assert response.status_code == 200, (number, node.base_url, response.text)

    for node in nodes:
        refused = api(node, "GET", "/api/notice")
        assert refused.status_code == 429, (node.base_url, refused.status_code, refused.text)
        assert refused.content == b""


# --------------------------------------------------------------------------- billing


def test_requests_on_both_nodes_are_billed_exactly(
    nodes: Cluster, world: World, upstream: FakeOpenAI
) -> None:
    expected: dict[str, int] = {}
    for node, stream in ((nodes.a, False), (nodes.b, False), (nodes.a, True), (nodes.b, True)):
        response = post_chat(node.base_url, world, **({"stream": True} if stream else {}))
        assert response.status_code == 200, (node.base_url, response.text)
        if stream:
            assert response.text.rstrip().endswith("data: [DONE]"), response.text
        expected[response.headers["x-oneapi-request-id"]] = CHAT_QUOTA

    assert len(expected) == 4
    assert len(upstream.requests) == 4
    assert_billed(world, expected)


def test_a_key_spent_on_one_node_is_refused_by_the_other(nodes: Cluster) -> None:
    """A key's balance is one balance: once node A's charges are in the database, node B,
    which served the key before, must not keep spending a balance that is gone."""
    charge = text_quota(CHAT_MODEL, 11, 1000)
    headroom = 600  # covers one request's reservation ((PreConsumedQuota 500 + prompt) × 0.75)
    assert charge > headroom
    with FakeOpenAI(api_key="sk-upstream", completion_tokens=1000) as costly:
        world = make_world(costly, models=CHAT_MODEL, key_quota=charge + headroom)
        for node in nodes:
            wait_for_routing(node.base_url, world)

        def remain() -> int:
            return ApiKey.objects.get(pk=world.key.pk).remain_quota

        first = post_chat(nodes.b.base_url, world)
        assert first.status_code == 200, first.text
        wait_until(lambda: remain() == headroom, what="B's charge in the database")
        second = post_chat(nodes.a.base_url, world)  # A reads the balance left by B
        assert second.status_code == 200, second.text
        wait_until(lambda: remain() == headroom - charge, what="A's charge in the database")
        assert remain() < 0  # spent: A's request cost more than its reservation
        time.sleep(PROPAGATION_SECONDS)
        spent = remain()

        third = post_chat(nodes.b.base_url, world)

        assert third.status_code in (401, 403), (
            f"node B served a key that node A had spent (remain_quota {spent} in the database "
            f"for {PROPAGATION_SECONDS}s): {third.status_code} {third.text[:120]}"
        )
        assert remain() == headroom - charge
