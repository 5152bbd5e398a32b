"""The Users page (admin): list, search, sort, paging, add, edit and the manage actions,
with One API's rules on who may act on whom (enforced by accounts.services)."""

from __future__ import annotations

import json

import pytest
from django.http import HttpResponse

from accounts.models import Role, User, UserStatus
from billing.models import Log, LogType
from tests.dashboard.conftest import ENGLISH, HTMX, People, page_html
from tests.factories import make_user


def toast_of(response: HttpResponse) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


# --- access ---------------------------------------------------------------------------------

PAGES = ("/user", "/user/add", "/user/edit/{alice}", "/user/{alice}/disable")


@pytest.mark.parametrize("path", PAGES)
def test_anonymous_visitors_are_sent_to_the_login(people: People, path: str) -> None:
    path = path.format(alice=people.user.pk)
    response = people.client("anonymous").get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", PAGES)
def test_common_users_are_refused(people: People, path: str) -> None:
    path = path.format(alice=people.user.pk)
    response = people.client("user").get(path, headers=ENGLISH)
    assert response.status_code == 403
    assert "You may not open this page" in response.content.decode()


def test_common_users_cannot_post_an_action(people: People) -> None:
    response = people.client("user").post(f"/user/{people.admin.pk}/disable")
    assert response.status_code == 403
    assert User.objects.get(pk=people.admin.pk).status == UserStatus.ENABLED


@pytest.mark.parametrize("role", ["admin", "root"])
@pytest.mark.parametrize("theme", ["default", "air"])
def test_admins_see_the_list_in_both_themes(people: People, role: str, theme: str) -> None:
    from oneapi import options

    options.set_option("Theme", theme)
    html = page_html(people.client(role).get("/user", headers=ENGLISH))
    assert "<html" in html and f'data-theme="{theme}"' in html
    for user in (people.user, people.admin, people.root):
        assert f'id="user-{user.pk}"' in html
    assert 'href="/user"' in html  # the menu entry appeared with the URL name


# --- list, search, sort, paging --------------------------------------------------------------


def test_search_answers_the_table_fragment_to_htmx(people: People) -> None:
    make_user(username="bob", email="bob@example.com")
    response = people.client("admin").get("/user?keyword=bob", headers={**HTMX, **ENGLISH})
    html = page_html(response)
    assert "<html" not in html and html.lstrip().startswith('<div id="user-table"')
    assert 'data-username="bob"' in html and 'data-username="alice"' not in html
    assert "HX-Request" in response["Vary"]


def test_search_finds_by_email_and_by_id(people: People) -> None:
    bob = make_user(username="bob", email="robert@example.com")
    client = people.client("admin")
    assert 'data-username="bob"' in page_html(client.get("/user?keyword=robert@"))
    by_id = page_html(client.get(f"/user?keyword={bob.pk}"))
    assert f'id="user-{bob.pk}"' in by_id


def test_sorting_by_quota_and_paging(people: People) -> None:
    for number in range(12):
        make_user(username=f"u{number:02d}", quota=(number + 1) * 10_000_000)
    client = people.client("admin")
    first = page_html(client.get("/user?order=quota", headers=HTMX))
    rows = [part.split('"')[0] for part in first.split('data-username="')[1:]]
    assert rows == [f"u{n:02d}" for n in range(11, 1, -1)]  # the ten with the most quota
    assert "?order=quota&amp;page=2" in first
    second = page_html(client.get("/user?order=quota&page=2", headers=HTMX))
    rows = [part.split('"')[0] for part in second.split('data-username="')[1:]]
    assert rows == ["u01", "u00", "root1", "admin1", "alice"]  # ties: newest first


# --- add and edit ------------------------------------------------------------------------------


def test_admin_adds_a_user(people: People) -> None:
    response = people.client("admin").post(
        "/user/add",
        {
            "username": "carol",
            "display_name": "Carol",
            "password": "secret-123",
            "password2": "secret-123",
        },
    )
    assert response.status_code == 302 and response["Location"] == "/user"
    carol = User.objects.get(username="carol")
    assert (carol.display_name, carol.role, carol.check_password("secret-123")) == (
        "Carol",
        Role.COMMON,
        True,
    )


def test_adding_a_taken_username_says_so_and_creates_nothing(people: People) -> None:
    response = people.client("admin").post(
        "/user/add",
        {"username": "alice", "password": "secret-123", "password2": "secret-123"},
        headers=ENGLISH,
    )
    assert "This username is taken." in page_html(response)
    assert User.objects.filter(username="alice").count() == 1


def test_editing_sets_quota_group_name_and_password(people: People) -> None:
    alice = people.user
    form = page_html(people.client("admin").get(f"/user/edit/{alice.pk}", headers=ENGLISH))
    assert 'name="quota" value="1000000"' in form and 'name="quota_seen" value="1000000"' in form
    response = people.client("admin").post(
        f"/user/edit/{alice.pk}",
        {
            "username": "alice2",
            "display_name": "Alice",
            "password": "new-secret-1",
            "password2": "new-secret-1",
            "group": "vip",
            "quota": "2500000",
            "quota_seen": "1000000",
        },
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert (alice.username, alice.display_name, alice.group, alice.quota) == (
        "alice2",
        "Alice",
        "vip",
        2_500_000,
    )
    assert alice.check_password("new-secret-1")
    log = Log.objects.get(user_id=alice.pk, type=LogType.MANAGE)
    assert "修改为" in log.content


def test_an_untouched_quota_does_not_undo_spending_meanwhile(people: People) -> None:
    # given: the form was shown with 1,000,000, then the user spent 300,000
    alice = people.user
    User.objects.filter(pk=alice.pk).update(quota=700_000)
    # when: the admin saves only a new display name
    people.client("admin").post(
        f"/user/edit/{alice.pk}",
        {
            "username": "alice",
            "display_name": "A",
            "group": "default",
            "quota": "1000000",
            "quota_seen": "1000000",
        },
    )
    # then
    alice.refresh_from_db()
    assert (alice.display_name, alice.quota) == ("A", 700_000)
    assert not Log.objects.filter(user_id=alice.pk, type=LogType.MANAGE).exists()


def test_invalid_edit_shows_errors_and_changes_nothing(people: People) -> None:
    alice = people.user
    response = people.client("admin").post(
        f"/user/edit/{alice.pk}",
        {"username": "alice", "group": "default", "quota": "-5", "quota_seen": "1000000"},
        headers=ENGLISH,
    )
    assert "greater than or equal to 0" in page_html(response)
    alice.refresh_from_db()
    assert alice.quota == 1_000_000


def test_admin_cannot_open_or_edit_another_admin_or_root(people: People) -> None:
    other = make_user(username="admin2", role=Role.ADMIN)
    client = people.client("admin")
    for target in (other, people.root):
        response = client.post(
            f"/user/edit/{target.pk}",
            {"username": "x", "group": "default", "quota": "1", "quota_seen": "0"},
            headers=ENGLISH,
        )
        assert response.status_code == 302 and response["Location"] == "/user"
        target.refresh_from_db()
        assert (target.username != "x", target.quota) == (True, target.quota)
    listing = page_html(client.get("/user", headers=ENGLISH))
    assert "You may not see users of your own role or a higher one." in listing


def test_editing_a_missing_user_is_404(people: People) -> None:
    assert people.client("root").get("/user/edit/999999").status_code == 404


# --- manage actions -----------------------------------------------------------------------------


def test_disable_then_enable_swaps_the_row_with_a_toast(people: People) -> None:
    client = people.client("admin")
    alice = people.user
    response = client.post(f"/user/{alice.pk}/disable", headers={**HTMX, **ENGLISH})
    html = page_html(response)
    assert html.lstrip().startswith(f'<tr id="user-{alice.pk}"') and "Disabled" in html
    assert toast_of(response) == {"level": "success", "message": "User alice disabled."}
    assert User.objects.get(pk=alice.pk).status == UserStatus.DISABLED
    response = client.post(f"/user/{alice.pk}/enable", headers={**HTMX, **ENGLISH})
    assert toast_of(response)["message"] == "User alice enabled."
    assert User.objects.get(pk=alice.pk).status == UserStatus.ENABLED


def test_admin_cannot_disable_root_and_is_told(people: People) -> None:
    response = people.client("admin").post(
        f"/user/{people.root.pk}/disable", headers={**HTMX, **ENGLISH}
    )
    assert response.status_code == 204
    assert toast_of(response) == {
        "level": "error",
        "message": "You may not see users of your own role or a higher one.",
    }
    assert User.objects.get(pk=people.root.pk).status == UserStatus.ENABLED


def test_root_cannot_demote_or_delete_root(people: People) -> None:
    client = people.client("root")
    response = client.post(f"/user/{people.root.pk}/demote", headers={**HTMX, **ENGLISH})
    assert toast_of(response) == {"level": "error", "message": "The root user cannot be demoted."}
    response = client.post(f"/user/{people.root.pk}/delete", headers={**HTMX, **ENGLISH})
    assert toast_of(response) == {"level": "error", "message": "The root user cannot be deleted."}
    root = User.objects.get(pk=people.root.pk)
    assert (root.role, root.status) == (Role.ROOT, UserStatus.ENABLED)


def test_only_root_promotes(people: People) -> None:
    alice = people.user
    # The admin's row shows no promote button, and a forged request is refused.
    listing = page_html(people.client("admin").get("/user"))
    assert f"/user/{alice.pk}/promote" not in listing
    response = people.client("admin").post(f"/user/{alice.pk}/promote", headers={**HTMX, **ENGLISH})
    assert toast_of(response) == {
        "level": "error",
        "message": "Only the root user may make admins.",
    }
    assert User.objects.get(pk=alice.pk).role == Role.COMMON

    response = people.client("root").post(f"/user/{alice.pk}/promote", headers={**HTMX, **ENGLISH})
    assert toast_of(response)["message"] == "User alice is now an admin."
    assert User.objects.get(pk=alice.pk).role == Role.ADMIN
    response = people.client("root").post(f"/user/{alice.pk}/demote", headers={**HTMX, **ENGLISH})
    assert User.objects.get(pk=alice.pk).role == Role.COMMON


def test_delete_removes_the_row_and_soft_deletes(people: People) -> None:
    alice = people.user
    response = people.client("admin").post(f"/user/{alice.pk}/delete", headers={**HTMX, **ENGLISH})
    assert response.status_code == 200 and response.content == b""
    assert toast_of(response)["message"] == "User alice deleted."
    deleted = User.objects.get(pk=alice.pk)
    assert deleted.status == UserStatus.DELETED and deleted.username.startswith("deleted_")


def test_actions_without_javascript_confirm_first(people: People) -> None:
    alice = people.user
    client = people.client("admin")
    confirm = page_html(client.get(f"/user/{alice.pk}/delete", headers=ENGLISH))
    assert "Delete the user “alice”? This cannot be undone." in confirm
    assert f'action="/user/{alice.pk}/delete"' in confirm
    assert User.objects.get(pk=alice.pk).status == UserStatus.ENABLED
    response = client.post(f"/user/{alice.pk}/delete")
    assert response.status_code == 302 and response["Location"] == "/user"
    assert User.objects.get(pk=alice.pk).status == UserStatus.DELETED


def test_the_chinese_page(people: People) -> None:
    html = page_html(people.client("admin").get("/user", headers={"Accept-Language": "zh-Hans"}))
    assert "用户管理" in html and "禁用" in html
