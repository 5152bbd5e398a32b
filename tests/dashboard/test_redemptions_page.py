"""The Redemption codes page (admin): list, search, paging, generating a batch (shown once,
copied or exported as CSV), enable/disable and delete."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.http import HttpResponse

from billing import services as billing
from billing.models import Redemption, RedemptionStatus
from tests.dashboard.conftest import ENGLISH, HTMX, People, page_html


def toast_of(response: HttpResponse) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


def batch(people: People, name: str = "promo", count: int = 2, quota: int = 1000) -> list[str]:
    return billing.create_redemptions(people.root.pk, name, quota, count)


PAGES = (
    "/redemption",
    "/redemption/add",
    "/redemption/export?name=promo",
    "/redemption/{id}/delete",
)


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_the_login(people: People, path: str) -> None:
    code = Redemption.objects.get(key=batch(people)[0])
    response = people.client("anonymous").get(path.format(id=code.pk))
    assert response.status_code == 302 and response["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", PAGES)
def test_common_users_are_refused_and_see_no_code(people: People, path: str) -> None:
    keys = batch(people)
    code = Redemption.objects.get(key=keys[0])
    response = people.client("user").get(path.format(id=code.pk))
    assert response.status_code == 403
    assert not any(key in response.content.decode() for key in keys)


def test_common_users_cannot_generate_disable_or_delete(people: People) -> None:
    code = Redemption.objects.get(key=batch(people)[0])
    client = people.client("user")
    assert client.post("/redemption/add", {"name": "x", "count": 1, "quota": 1}).status_code == 403
    assert client.post(f"/redemption/{code.pk}/status", {"status": "2"}).status_code == 403
    assert client.post(f"/redemption/{code.pk}/delete").status_code == 403
    assert Redemption.objects.count() == 2
    assert Redemption.objects.get(pk=code.pk).status == RedemptionStatus.ENABLED


@pytest.mark.parametrize("theme", ["default", "air"])
def test_admin_sees_the_list_in_both_themes(people: People, theme: str) -> None:
    from oneapi import options

    options.set_option("Theme", theme)
    keys = batch(people)
    html = page_html(people.client("admin").get("/redemption", headers=ENGLISH))
    assert f'data-theme="{theme}"' in html and html.count('data-code-name="promo"') == 2
    assert all(f'data-copy="{key}"' in html for key in keys)


def test_generating_a_batch_shows_the_codes_once_with_copy_all_and_csv(people: People) -> None:
    client = people.client("admin")
    response = client.post("/redemption/add", {"name": "spring", "count": "3", "quota": "250000"})
    assert response.status_code == 302 and response["Location"] == "/redemption"
    codes = list(Redemption.objects.filter(name="spring").order_by("id"))
    assert [(c.quota, c.status, c.user_id) for c in codes] == [
        (250_000, RedemptionStatus.ENABLED, people.admin.pk)
    ] * 3
    html = page_html(client.get("/redemption", headers=ENGLISH))
    everything = "\n".join(c.key for c in codes)
    assert 'id="new-codes"' in html and f'data-copy="{everything}"' in html
    assert "3 codes worth" in html
    assert 'href="/redemption/export?name=spring"' in html
    assert 'id="new-codes"' not in page_html(client.get("/redemption"))  # shown once

    export = client.get("/redemption/export?name=spring")
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    assert rows[0] == list(billing.CSV_COLUMNS)
    assert [row[2] for row in rows[1:]] == [c.key for c in codes]


def test_an_invalid_batch_creates_nothing(people: People) -> None:
    response = people.client("admin").post(
        "/redemption/add", {"name": "big", "count": "101", "quota": "1"}, headers=ENGLISH
    )
    assert "less than or equal to 100" in page_html(response)
    assert not Redemption.objects.exists()


def test_export_of_an_unknown_name_is_404(people: People) -> None:
    assert people.client("admin").get("/redemption/export?name=nothing").status_code == 404


def test_search_and_paging_answer_the_table_fragment(people: People) -> None:
    batch(people, "alpha", count=12)
    batch(people, "beta", count=1)
    client = people.client("admin")
    html = page_html(client.get("/redemption?keyword=alp", headers=HTMX))
    assert "<html" not in html and html.lstrip().startswith('<div id="redemption-table"')
    assert html.count('data-code-name="alpha"') == 10 and "beta" not in html
    assert "?keyword=alp&amp;page=2" in html
    second = page_html(client.get("/redemption?keyword=alp&page=2", headers=HTMX))
    assert second.count('data-code-name="alpha"') == 2


def test_disable_and_enable_swap_the_row(people: People) -> None:
    code = Redemption.objects.get(key=batch(people)[0])
    client = people.client("admin")
    response = client.post(
        f"/redemption/{code.pk}/status", {"status": "2"}, headers={**HTMX, **ENGLISH}
    )
    assert page_html(response).lstrip().startswith(f'<tr id="redemption-{code.pk}"')
    assert toast_of(response) == {"level": "success", "message": "Code disabled."}
    assert Redemption.objects.get(pk=code.pk).status == RedemptionStatus.DISABLED
    client.post(f"/redemption/{code.pk}/status", {"status": "1"}, headers=HTMX)
    assert Redemption.objects.get(pk=code.pk).status == RedemptionStatus.ENABLED


def test_a_redeemed_code_cannot_be_enabled_again(people: People) -> None:
    key = batch(people)[0]
    billing.redeem(people.user, key)
    code = Redemption.objects.get(key=key)
    response = people.client("admin").post(
        f"/redemption/{code.pk}/status", {"status": "1"}, headers={**HTMX, **ENGLISH}
    )
    assert toast_of(response) == {
        "level": "error",
        "message": "This code has been redeemed: its status can no longer change.",
    }
    assert Redemption.objects.get(pk=code.pk).status == RedemptionStatus.USED


def test_delete_confirms_without_javascript_and_swaps_the_row_out_with_it(people: People) -> None:
    first, second = (Redemption.objects.get(key=k) for k in batch(people))
    client = people.client("admin")
    confirm = page_html(client.get(f"/redemption/{first.pk}/delete", headers=ENGLISH))
    assert f"Delete the redemption code “promo” (#{first.pk})?" in confirm
    assert Redemption.objects.count() == 2
    response = client.post(f"/redemption/{first.pk}/delete", headers={**HTMX, **ENGLISH})
    assert response.content == b"" and toast_of(response)["message"] == "Code deleted."
    response = client.post(f"/redemption/{second.pk}/delete")
    assert response.status_code == 302 and response["Location"] == "/redemption"
    assert not Redemption.objects.exists()
    assert client.post(f"/redemption/{second.pk}/delete").status_code == 404
