"""Concurrent requests against the real database: a code is redeemed once, however many
requests race for it, and concurrent top-ups all land. Each thread is a separate request on
its own database connection, as in a threaded or multi-process server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import Role, User
from billing import services
from billing.models import Log, LogType, Redemption, RedemptionStatus
from oneapi.api import ApiError
from tests.factories import make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

THREADS = 20


def client_for(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=user.access_token)
    return client


def race(request: Callable[[int], Any]) -> list[Any]:
    """Call `request(i)` from THREADS threads released at the same moment."""
    barrier = threading.Barrier(THREADS)

    def run(index: int) -> Any:
        try:
            barrier.wait(timeout=30)
            return request(index)
        finally:
            connection.close()  # this thread's connection; the test's own stays open

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(run, range(THREADS)))


@pytest.fixture
def people() -> list[User]:
    cache.clear()  # rate-limit counters of earlier tests
    return [make_user(username=f"racer{i}", access_token=f"{i:032d}") for i in range(THREADS)]


def test_a_code_raced_by_twenty_users_is_redeemed_once(people: list[User]) -> None:
    admin = make_user(username="issuer", role=Role.ADMIN)
    [key] = services.create_redemptions(admin.pk, "race", 7000, 1)

    answers = race(
        lambda i: client_for(people[i]).post("/api/user/topup", {"key": key}, format="json").json()
    )

    winners = [i for i, answer in enumerate(answers) if answer["success"]]
    assert len(winners) == 1, answers
    assert answers[winners[0]]["data"] == 7000
    losers = [answer["message"] for answer in answers if not answer["success"]]
    assert losers == [services.USED_REDEMPTION_KEY] * (THREADS - 1)
    winner = people[winners[0]]
    quotas = dict(User.objects.filter(username__startswith="racer").values_list("pk", "quota"))
    assert quotas == {person.pk: 7000 if person == winner else 0 for person in people}
    code = Redemption.objects.get(key=key)
    assert (code.status, code.redeemed_by) == (RedemptionStatus.USED, winner.pk)
    assert list(Log.objects.values_list("user_id", "type", "quota")) == [
        (winner.pk, LogType.TOPUP, 7000)
    ]


def redeem_answer(user: User, key: str) -> int | str:
    """The service called directly: the quota added, or the refusal message."""
    try:
        return services.redeem(User.objects.get(pk=user.pk), key)
    except ApiError as error:
        return error.message


def test_one_user_racing_the_same_code_gets_it_once(people: list[User]) -> None:
    admin = make_user(username="issuer", role=Role.ADMIN)
    [key] = services.create_redemptions(admin.pk, "race", 7000, 1)
    alice = people[0]

    answers = race(lambda _: redeem_answer(alice, key))

    assert [answer for answer in answers if answer != services.USED_REDEMPTION_KEY] == [7000]
    assert User.objects.get(pk=alice.pk).quota == 7000
    assert Log.objects.count() == 1


def test_twenty_concurrent_admin_top_ups_all_land(people: list[User]) -> None:
    admin = make_user(username="payments", role=Role.ADMIN, access_token="a" * 32)
    alice = people[0]

    answers = race(
        lambda i: (
            client_for(admin)
            .post(
                "/api/topup",
                {"user_id": alice.pk, "quota": 1000, "remark": f"order {i}"},
                format="json",
            )
            .json()
        )
    )

    assert all(answer["success"] for answer in answers), answers
    assert User.objects.get(pk=alice.pk).quota == THREADS * 1000
    remarks = set(Log.objects.filter(user_id=alice.pk).values_list("content", flat=True))
    assert remarks == {f"order {i}" for i in range(THREADS)}
