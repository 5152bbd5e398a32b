"""Property-based fuzzing of the management API (`/api`): bodies, query strings and headers.

Whatever arrives, `/api` answers in One API's envelope: `{"success": false, "message": ...}`
with a non-empty message on failure (HTTP 200, or 400 for a body that is not JSON, 401 without
a login, 415 for a body that is not declared JSON, 429 from the rate limiter), never a 5xx;
and a refused request changes nothing in the database. A fuzzed request that happens to be
valid may succeed: then it changes only what its route is about.

Each example runs in a savepoint that is rolled back, with the rate-limit counters and the
process caches emptied, so examples do not see each other's effects.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.core.cache import cache
from django.db import models, transaction
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from accounts.models import User
from billing.models import ApiKey, Log, Redemption
from channels_mgmt.models import Channel
from oneapi import caching
from oneapi.models import Option
from tests.api.conftest import Actors, actors

__all__ = ["actors"]  # the fixture, used by name

pytestmark = pytest.mark.django_db

# FUZZ_EXAMPLES=1000 for a longer hunt; the default keeps the suite within a minute.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")),
    deadline=None,
    database=None,  # nothing written into the work tree; failures are pinned by @example
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Statuses of a refusal, besides One API's usual 200 with `success: false`.
REFUSAL_STATUSES = {200, 400, 401, 415, 429}
TABLES: dict[str, type[models.Model]] = {
    "users": User,
    "keys": ApiKey,
    "channels": Channel,
    "redemptions": Redemption,
    "options": Option,
    "logs": Log,
}


# ---------------------------------------------------------------------- the database


Snapshot = dict[str, dict[Any, dict[str, Any]]]


def snapshot() -> Snapshot:
    tables: Snapshot = {}
    for name, model in TABLES.items():
        pk = model._meta.pk.attname
        tables[name] = {row[pk]: row for row in model.objects.order_by("pk").values()}
    return tables


@dataclass
class Changes:
    added: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    removed: dict[str, list[Any]] = field(default_factory=dict)
    changed: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = field(default_factory=dict)

    @property
    def tables(self) -> set[str]:
        return set(self.added) | set(self.removed) | set(self.changed)

    def __bool__(self) -> bool:
        return bool(self.tables)


def changes(before: Snapshot, after: Snapshot) -> Changes:
    result = Changes()
    for name in TABLES:
        old, new = before[name], after[name]
        if added := [new[pk] for pk in new.keys() - old.keys()]:
            result.added[name] = added
        if removed := sorted(old.keys() - new.keys()):
            result.removed[name] = removed
        if changed := [(old[pk], new[pk]) for pk in old.keys() & new.keys() if old[pk] != new[pk]]:
            result.changed[name] = changed
    return result


def drop_process_caches() -> None:
    for kind in list(caching._handlers):
        caching.run_handlers(kind, "*")


@contextmanager
def isolated() -> Iterator[None]:
    """One example's world: a savepoint rolled back afterwards, fresh limits and caches."""
    cache.clear()
    drop_process_caches()
    try:
        with transaction.atomic():
            yield
            transaction.set_rollback(True)
    finally:
        cache.clear()
        drop_process_caches()


# ---------------------------------------------------------------------- the answers


def describe(response: Any) -> str:
    return f"{response.status_code} {response.content[:600]!r}"


def envelope(response: Any) -> dict[str, Any] | None:
    """The checked `{success, message}` body; None for the rate limiter's empty 429."""
    event(f"status {response.status_code}")
    assert response.status_code < 500, describe(response)
    if response.status_code == 429:
        assert response.content == b"", describe(response)
        return None
    assert response["Content-Type"].startswith("application/json"), describe(response)
    body = json.loads(response.content)
    assert isinstance(body, dict) and isinstance(body.get("success"), bool), describe(response)
    event(f"success {body['success']}")
    if body["success"]:
        assert response.status_code == 200, describe(response)
    else:
        assert response.status_code in REFUSAL_STATUSES, describe(response)
        message = body.get("message")
        assert isinstance(message, str) and message.strip(), describe(response)
    return body


def call(
    client: APIClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
    allowed: Callable[[Changes, Any], bool] = lambda changed, answer: False,
) -> dict[str, Any] | None:
    """One checked request: a refusal changes nothing; a success changes only what `allowed`
    accepts."""
    data = raw if raw is not None else (b"" if body is None else dumps(body))
    before = snapshot()
    response = client.generic(method, path, data, content_type=content_type)
    after = snapshot()
    answer = envelope(response)
    changed = changes(before, after)
    if answer is None or not answer["success"]:
        assert not changed, f"{method} {path} -> {describe(response)} changed {changed}"
    elif changed:
        assert allowed(changed, answer), f"{method} {path} -> {describe(response)}: {changed}"
    return answer


def as_int(value: Any) -> int:
    """A number as DRF's IntegerField reads it ("5", " 5 ", 5.0 and "5.0" are 5)."""
    return int(re.sub(r"\.0*\s*$", "", str(value).strip()))


def anything(changed: Changes, answer: Any) -> bool:
    return True


def dumps(value: Any) -> bytes:
    """JSON as a lenient client writes it: big integers, NaN and Infinity included."""
    return json.dumps(value, allow_nan=True).encode()


# ---------------------------------------------------------------------- strategies

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=10,
)
texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "\x00", "a\x00b", "' OR 1=1 --", "<script>", "名字", "a" * 3000]),
)
ints = st.one_of(
    st.integers(min_value=-3, max_value=200),
    st.integers(),
    st.sampled_from([-1, 0, 2**31, 2**53, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64]),
    st.floats(),
    st.text(max_size=6),
    st.booleans(),
)
loose = st.one_of(texts, ints, json_values)


def fields(
    valid: dict[str, Any] | None = None, **strategies: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """A body with these fields, each present or not, each fuzzed; the same over a `valid`
    body (so that some requests get past the first check); or any JSON at all."""
    fuzzed = st.fixed_dictionaries({}, optional=strategies)
    return st.one_of(
        fuzzed,
        fuzzed,
        fuzzed.map(lambda body: {**(valid or {}), **body}),
        fuzzed.map(lambda body: {**(valid or {}), **body}),
        json_values,
    )


content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "",
    ]
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"{",
            b"null",
            b"[]",
            b'"text"',
            b"\xff\xfe{}",
            b'{"name": "\\ud800"}',
            b'{"name": NaN}',
            b'{"quota": 1e999}',
            b'{"id": 1, "id": 2}',
            b"[" * 5000,
            b'{"a":' * 2000,
        ]
    ),
)


# ---------------------------------------------------------------------- bodies


def only_own_new_key(user: User) -> Callable[[Changes, Any], bool]:
    def allowed(changed: Changes, answer: Any) -> bool:
        added = changed.added.get("keys", [])
        return (
            changed.tables == {"keys"}
            and len(added) == 1
            and added[0]["user_id"] == user.pk
            and answer["data"]["id"] == added[0]["id"]
        )

    return allowed


@FUZZ
@given(
    body=fields(
        name=texts,
        expired_time=ints,
        remain_quota=ints,
        unlimited_quota=loose,
        models=loose,
        subnet=st.sampled_from(["10.0.0.0/8", "::1", "1.2.3.4/33", "x", "10.0.0.1, ,"]) | loose,
    )
)
@example(body={"name": "k", "remain_quota": 2**63})
@example(body={"name": "\x00"})
def test_create_token(actors: Actors, body: Any) -> None:
    with isolated():
        call(
            actors.client("user"),
            "POST",
            "/api/token/",
            body,
            allowed=only_own_new_key(actors.user),
        )


@FUZZ
@given(
    body=fields(
        {"id": "own", "name": "renamed"},
        id=ints | st.sampled_from(["own", "other"]),
        status=ints,
        name=texts,
        expired_time=ints,
        remain_quota=ints,
        unlimited_quota=loose,
        models=loose,
        subnet=loose,
    ),
    query=st.sampled_from(["", "?status_only=1", "?status_only=", "?status_only=false"]),
)
def test_update_token(actors: Actors, body: Any, query: str) -> None:
    with isolated():
        own = ApiKey.objects.create(user=actors.user, key="o" * 48, name="own", remain_quota=10)
        other = ApiKey.objects.create(user=actors.other, key="x" * 48, name="bob", remain_quota=10)
        if isinstance(body, dict) and body.get("id") in ("own", "other"):
            body = {**body, "id": (own if body["id"] == "own" else other).pk}

        def allowed(changed: Changes, answer: Any) -> bool:
            rows = changed.changed.get("keys", [])
            return changed.tables == {"keys"} and [old["id"] for old, _ in rows] == [own.pk]

        call(actors.client("user"), "PUT", f"/api/token/{query}", body, allowed=allowed)


def one_new_user(changed: Changes, answer: Any) -> bool:
    """A registration adds one common user (and, with it, its default key and a log)."""
    users = changed.added.get("users", [])
    return (
        len(users) == 1
        and users[0]["role"] == 1
        and not changed.removed
        and changed.tables <= {"users", "keys", "logs"}
        and set(changed.changed) <= {"users"}  # an inviter's reward
    )


@FUZZ
@given(
    body=fields(
        {"username": "newbie", "password": "password123"},
        username=texts | st.sampled_from(["alice", "newbie", " newbie ", "x" * 12, "x" * 13]),
        password=texts | st.sampled_from(["password123", "1234567", "p" * 20, "p" * 21]),
        email=texts,
        verification_code=loose,
        aff_code=loose,
    )
)
@example(body={"username": "newbie", "password": "password123"})
@example(body={"username": "newbie\x00", "password": "password123"})
def test_register(actors: Actors, body: Any) -> None:
    with isolated():
        call(APIClient(), "POST", "/api/user/register", body, allowed=one_new_user)


@FUZZ
@given(
    body=fields(
        username=texts | st.sampled_from(["alice", "alice ", "ALICE", "root1"]),
        password=texts | st.sampled_from(["password123", "password1234"]),
    )
)
def test_login(actors: Actors, body: Any) -> None:
    def allowed(changed: Changes, answer: Any) -> bool:
        """A login records its time on the user who logged in, and nothing else."""
        rows = changed.changed.get("users", [])
        if changed.tables != {"users"} or [old["id"] for old, _ in rows] != [answer["data"]["id"]]:
            return False
        old, new = rows[0]
        return {name for name in old if old[name] != new[name]} == {"last_login"}

    with isolated():
        call(APIClient(), "POST", "/api/user/login", body, allowed=allowed)


OPTION_KEYS = [
    "SystemName",
    "Theme",
    "RetryTimes",
    "QuotaForNewUser",
    "QuotaRemindThreshold",
    "PreConsumedQuota",
    "ModelRatio",
    "GroupRatio",
    "CompletionRatio",
    "LogConsumeEnabled",
    "RegisterEnabled",
    "PasswordLoginEnabled",
    "EmailDomainWhitelist",
    "GitHubOAuthEnabled",
    "ChannelDisableThreshold",
    "TopUpLink",
    "SMTPPort",
    "Notice",
]


@FUZZ
@given(
    body=fields(
        {"key": "SystemName", "value": "x"},
        key=st.sampled_from(OPTION_KEYS) | texts | json_values,
        value=st.one_of(
            texts,
            ints,
            json_values,
            json_values.map(json.dumps),
            st.dictionaries(st.text(max_size=10), ints).map(json.dumps),
        ),
    )
)
@example(body={"key": "RetryTimes", "value": 2**63})
@example(body={"key": "ModelRatio", "value": '{"gpt-4": -1}'})
@example(body={"key": "QuotaForNewUser", "value": "-5"})
def test_option_update(actors: Actors, body: Any) -> None:
    def allowed(changed: Changes, answer: Any) -> bool:
        rows = changed.added.get("options", []) + [
            new for _, new in changed.changed.get("options", [])
        ]
        return changed.tables == {"options"} and [row["key"] for row in rows] == [body["key"]]

    with isolated():
        call(actors.client("root"), "PUT", "/api/option/", body, allowed=allowed)


@FUZZ
@given(
    body=fields(
        {"key": "sk-fuzz", "name": "fuzz", "models": "gpt-4o-mini"},
        type=ints,
        key=texts | st.sampled_from(["sk-a\nsk-b", "\n\n", " ", "sk-a\r\n" * 3]),
        name=texts,
        base_url=texts | st.sampled_from(["http://127.0.0.1:1", "ftp://x", "javascript:1"]),
        other=loose,
        models=loose | st.lists(texts, max_size=3),
        group=loose | st.lists(texts, max_size=3),
        model_mapping=loose | st.dictionaries(texts, loose, max_size=3).map(json.dumps),
        priority=ints,
        weight=ints,
        config=loose,
        system_prompt=loose,
        status=ints,
        test_model=loose,
    )
)
@example(body={"key": "sk-a", "models": "gpt-4", "group": "x" * 33})
def test_channel_create(actors: Actors, body: Any) -> None:
    def allowed(changed: Changes, answer: Any) -> bool:
        added = changed.added.get("channels", [])
        return changed.tables == {"channels"} and len(added) == len(answer["data"]) >= 1

    with isolated():
        call(actors.client("admin"), "POST", "/api/channel/", body, allowed=allowed)


@FUZZ
@given(body=fields({"name": "fuzz", "quota": 10, "count": 2}, name=texts, quota=ints, count=ints))
@example(body={"name": "x", "quota": -1, "count": 1})
@example(body={"name": "x", "quota": 1, "count": 101})
def test_redemption_create(actors: Actors, body: Any) -> None:
    def allowed(changed: Changes, answer: Any) -> bool:
        added = changed.added.get("redemptions", [])
        return (
            changed.tables == {"redemptions"}
            and len(added) == as_int(body["count"])
            and all(row["quota"] == as_int(body.get("quota", 100)) >= 0 for row in added)
        )

    with isolated():
        call(actors.client("admin"), "POST", "/api/redemption/", body, allowed=allowed)


@FUZZ
@given(body=fields(key=texts | st.sampled_from(["CODE", " CODE ", "USED", "code"]) | json_values))
@example(body={"key": "CODE"})
def test_redeem(actors: Actors, body: Any) -> None:
    with isolated():
        code = Redemption.objects.create(user=actors.admin, key="CODE", name="c", quota=500)
        Redemption.objects.create(user=actors.admin, key="USED", name="u", quota=500, status=3)

        def allowed(changed: Changes, answer: Any) -> bool:
            users = changed.changed.get("users", [])
            codes = changed.changed.get("redemptions", [])
            return (
                changed.tables == {"users", "redemptions", "logs"}
                and [(old["id"], new["quota"] - old["quota"]) for old, new in users]
                == [(actors.user.pk, 500)]
                and [old["id"] for old, _ in codes] == [code.pk]
                and answer["data"] == 500
            )

        call(actors.client("user"), "POST", "/api/user/topup", body, allowed=allowed)


@FUZZ
@given(
    body=fields(
        {"user_id": "self", "quota": 5}, user_id=ints | st.just("self"), quota=ints, remark=loose
    )
)
@example(body={"user_id": "self", "quota": -100})
@example(body={"user_id": "self", "quota": 2**63 - 1})
def test_admin_top_up(actors: Actors, body: Any) -> None:
    if isinstance(body, dict) and body.get("user_id") == "self":
        body = {**body, "user_id": actors.user.pk}

    def allowed(changed: Changes, answer: Any) -> bool:
        users = changed.changed.get("users", [])
        return (
            changed.tables <= {"users", "logs"}
            and [old["id"] for old, _ in users] == [as_int(body["user_id"])]
            and all(new["quota"] - old["quota"] == as_int(body["quota"]) >= 0 for old, new in users)
        )

    with isolated():
        call(actors.client("admin"), "POST", "/api/topup", body, allowed=allowed)


@FUZZ
@given(
    body=fields(
        username=texts | st.sampled_from(["bob", "alice", "x" * 13]),
        display_name=loose,
        password=loose | st.sampled_from(["password123", "short"]),
        quota=ints,
        role=ints,
        group=loose,
    )
)
@example(body={"username": "bob"})
@example(body={"quota": 10**9, "role": 100})
def test_update_self(actors: Actors, body: Any) -> None:
    """Only the caller's own name, display name and password may change."""

    def allowed(changed: Changes, answer: Any) -> bool:
        rows = changed.changed.get("users", [])
        if changed.tables != {"users"} or [old["id"] for old, _ in rows] != [actors.user.pk]:
            return False
        old, new = rows[0]
        diff = {name for name in old if old[name] != new[name]}
        return diff <= {"username", "display_name", "password"}

    with isolated():
        call(actors.client("user"), "PUT", "/api/user/self", body, allowed=allowed)


# Every fuzzed write route, for the raw-body and header tests (route, caller).
WRITE_ROUTES = [
    ("POST", "/api/token/", "user"),
    ("PUT", "/api/token/", "user"),
    ("PUT", "/api/token/?status_only=1", "user"),
    ("POST", "/api/user/register", "anonymous"),
    ("POST", "/api/user/login", "anonymous"),
    ("PUT", "/api/option/", "root"),
    ("POST", "/api/channel/", "admin"),
    ("PUT", "/api/channel/", "admin"),
    ("POST", "/api/redemption/", "admin"),
    ("PUT", "/api/redemption/", "admin"),
    ("POST", "/api/user/topup", "user"),
    ("POST", "/api/topup", "admin"),
    ("PUT", "/api/user/self", "user"),
    ("POST", "/api/user/", "admin"),
    ("PUT", "/api/user/", "admin"),
    ("POST", "/api/user/manage", "admin"),
]


@FUZZ
@given(route=st.sampled_from(WRITE_ROUTES), raw=raw_bodies, content_type=content_types)
@example(route=("PUT", "/api/option/", "root"), raw=b"[" * 5000, content_type="application/json")
@example(route=("POST", "/api/user/login", "anonymous"), raw=b"{", content_type="text/plain")
def test_raw_bodies(
    actors: Actors, route: tuple[str, str, str], raw: bytes, content_type: str
) -> None:
    method, path, actor = route
    with isolated():
        # The shape and "a refusal changes nothing" are checked; what a success may change is
        # the business of the route's own test above.
        call(
            actors.client(actor), method, path, raw=raw, content_type=content_type, allowed=anything
        )


@FUZZ
@given(
    route=st.sampled_from(WRITE_ROUTES),
    authorization=st.one_of(
        st.sampled_from(["", "Bearer", "Bearer ", "Basic abc", "Bearer \x00", "null"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=60),
    ),
    body=json_values,
)
def test_bad_access_tokens(
    actors: Actors, route: tuple[str, str, str], authorization: str, body: Any
) -> None:
    """A wrong token is refused before anything is read or written."""
    method, path, _ = route
    with isolated():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=authorization)
        answer = call(client, method, path, body, allowed=anything)
        if answer is not None and path not in ("/api/user/register", "/api/user/login"):
            assert answer["success"] is False


LIST_ROUTES = [
    ("/api/token/", "user"),
    ("/api/token/search", "user"),
    ("/api/log/", "admin"),
    ("/api/log/stat", "admin"),
    ("/api/log/search", "admin"),
    ("/api/log/self", "user"),
    ("/api/log/self/stat", "user"),
    ("/api/log/self/search", "user"),
    ("/api/channel/", "admin"),
    ("/api/channel/search", "admin"),
    ("/api/user/", "admin"),
    ("/api/user/search", "admin"),
    ("/api/redemption/", "admin"),
    ("/api/redemption/search", "admin"),
    ("/api/redemption/export", "admin"),
    ("/api/user/dashboard", "user"),
    ("/api/user/available_models", "user"),
    ("/api/option/", "root"),
]
query_values = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        ["", "-1", "0", "1", "NaN", "1e3", "0x10", "99999999999999999999999", "%", "\x00"]
    ),
    st.integers().map(str),
)
QUERY_NAMES = [
    "p",
    "size",
    "keyword",
    "order",
    "type",
    "start_timestamp",
    "end_timestamp",
    "model_name",
    "token_name",
    "username",
    "channel",
    "name",
    "status_only",
]


@FUZZ
@given(
    route=st.sampled_from(LIST_ROUTES),
    params=st.dictionaries(st.sampled_from(QUERY_NAMES) | st.text(max_size=5), query_values),
    raw_query=st.none() | st.text(alphabet=string.printable + "%é\u4e2d", max_size=40),
)
@example(route=("/api/log/", "admin"), params={"p": "99999999999999999999999"}, raw_query=None)
@example(route=("/api/log/", "admin"), params={"start_timestamp": "1e3"}, raw_query=None)
def test_list_queries(
    actors: Actors, route: tuple[str, str], params: dict[str, str], raw_query: str | None
) -> None:
    path, actor = route
    with isolated():
        client = actors.client(actor)
        before = snapshot()
        if raw_query is not None:
            response = client.get(f"{path}?{raw_query}")
        else:
            response = client.get(path, params)
        if response["Content-Type"].startswith("text/csv"):  # the export's CSV
            assert response.status_code == 200
        else:
            envelope(response)
        assert not changes(before, snapshot())
