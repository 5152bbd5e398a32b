"""Callers of `/api` for authorization tests: anonymous, two common users, admin and root."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import Role, User
from oneapi.api import NOT_LOGGED_IN, ROLE_TOO_LOW
from tests.factories import make_user

ACTORS = ("anonymous", "user", "other", "admin", "root")


@dataclass
class Actors:
    user: User
    other: User
    admin: User
    root: User

    def client(self, name: str) -> APIClient:
        """A client calling as `name`, by its system access token (anonymous: none)."""
        client = APIClient()
        if name != "anonymous":
            client.credentials(HTTP_AUTHORIZATION=getattr(self, name).access_token)
        return client

    def session_client(self, name: str) -> APIClient:
        """A client logged in by session cookie, as a browser would be."""
        client = APIClient()
        client.force_login(getattr(self, name))
        return client

    def rank(self, name: str) -> int:
        return Role.GUEST if name == "anonymous" else getattr(self, name).role


def with_token(**fields: Any) -> User:
    return make_user(access_token=uuid.uuid4().hex, **fields)


@pytest.fixture
def actors(db: None) -> Actors:
    cache.clear()  # rate-limit counters of earlier tests
    return Actors(
        user=with_token(username="alice", quota=1_000_000),
        other=with_token(username="bob", quota=1_000_000),
        admin=with_token(username="admin1", role=Role.ADMIN),
        root=with_token(username="root1", role=Role.ROOT),
    )


def assert_denied(response: Any, actor: str) -> None:
    """How One API refuses: 401 without a login, `success: false` for a role too low."""
    body = response.json()
    assert body["success"] is False, body
    if actor == "anonymous":
        assert response.status_code == 401
        assert body["message"] == NOT_LOGGED_IN
    else:
        assert response.status_code == 200
        assert body["message"] == ROLE_TOO_LOW
