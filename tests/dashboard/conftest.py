"""Callers of the console pages: anonymous, a common user, an admin and root, each with a
Django test client logged in through the session (as a browser is)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client

from accounts.models import Role, User
from tests.factories import make_user

ROLES = ("anonymous", "user", "admin", "root")
HTMX = {"HX-Request": "true"}
ENGLISH = {"Accept-Language": "en"}


@dataclass
class People:
    user: User
    admin: User
    root: User

    def client(self, role: str) -> Client:
        client = Client()
        if role != "anonymous":
            client.force_login(getattr(self, role))
        return client


@pytest.fixture
def people(db: None) -> Iterator[People]:
    cache.clear()  # rate-limit counters and email codes of earlier tests
    yield People(
        user=make_user(username="alice", quota=1_000_000),
        admin=make_user(username="admin1", role=Role.ADMIN, quota=1_000_000),
        root=make_user(username="root1", role=Role.ROOT, quota=1_000_000),
    )
    cache.clear()


def page_html(response: HttpResponse) -> str:
    assert response.status_code == 200, (response.status_code, response.content[:500])
    return response.content.decode()
