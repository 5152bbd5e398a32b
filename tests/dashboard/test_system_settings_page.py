"""The System settings page (root only): option groups saved with `/api/option`'s own
validation, all or nothing; JSON ratio editors; write-only secrets; content previews."""

from __future__ import annotations

import json

import pytest
from django.http import HttpResponse

from dashboard import option_settings
from oneapi import options
from oneapi.api_views import is_secret
from oneapi.models import Option
from tests.dashboard.conftest import ENGLISH, HTMX, People, page_html

SECTIONS = ("system", "operation", "ratios", "content")


def toast_of(response: HttpResponse) -> dict:
    return json.loads(response["HX-Trigger"])["toast"]


def stored() -> dict[str, str]:
    return dict(Option.objects.values_list("key", "value"))


def post_group(people: People, section: str, group: str, data: dict, **headers: str):
    body = {"group": group, **data}
    return people.client("root").post(f"/setting/system/{section}", body, headers=headers)


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/setting/system", *(f"/setting/system/{s}" for s in SECTIONS)])
def test_anonymous_visitors_are_sent_to_the_login(people: People, path: str) -> None:
    response = people.client("anonymous").get(path)
    assert response.status_code == 302 and response["Location"].startswith("/login?next=")


@pytest.mark.parametrize("role", ["user", "admin"])
@pytest.mark.parametrize("path", ["/setting/system", "/setting/system/ratios"])
def test_only_root_opens_it(people: People, role: str, path: str) -> None:
    response = people.client(role).get(path, headers=ENGLISH)
    assert response.status_code == 403
    assert "ModelRatio" not in response.content.decode()


@pytest.mark.parametrize("role", ["user", "admin"])
def test_only_root_saves_or_previews(people: People, role: str) -> None:
    client = people.client(role)
    response = client.post("/setting/system/content", {"group": "site", "SystemName": "Hacked"})
    assert response.status_code == 403
    assert client.post("/setting/system/preview", {"key": "About", "About": "x"}).status_code == 403
    assert "SystemName" not in stored()


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("theme", ["default", "air"])
def test_root_sees_every_section_in_both_themes(people: People, section: str, theme: str) -> None:
    options.set_option("Theme", theme)
    html = page_html(people.client("root").get(f"/setting/system/{section}", headers=ENGLISH))
    assert f'data-theme="{theme}"' in html
    for group in option_settings.section(section).groups:
        assert f'id="options-{group.slug}"' in html
        for field in group.fields:
            assert f'name="{field.key}"' in html


def test_the_menu_links_the_page_for_root_only(people: People) -> None:
    assert 'href="/setting/system"' in page_html(people.client("root").get("/dashboard"))
    assert 'href="/setting/system"' not in page_html(people.client("admin").get("/dashboard"))


def test_unknown_sections_and_groups_are_404(people: People) -> None:
    client = people.client("root")
    assert client.get("/setting/system/nothing").status_code == 404
    assert client.post("/setting/system/system", {"group": "nothing"}).status_code == 404


# --- saving ----------------------------------------------------------------------------------


def test_saving_a_group_stores_its_changed_options(people: People) -> None:
    response = post_group(
        people,
        "operation",
        "quota",
        {
            "QuotaForNewUser": "1000",
            "QuotaForInviter": "0",
            "QuotaForInvitee": "0",
            "PreConsumedQuota": "800",
            "QuotaRemindThreshold": "1000",
            "QuotaPerUnit": "500000",
        },
        **ENGLISH,
    )
    assert response.status_code == 302 and response["Location"] == "/setting/system/operation"
    # Only what differs from the stored (default) values is written.
    assert stored() == {"QuotaForNewUser": "1000", "PreConsumedQuota": "800"}
    assert options.get_int("PreConsumedQuota") == 800


def test_toggles_are_saved_as_true_and_false(people: People) -> None:
    response = post_group(
        people,
        "operation",
        "general",
        {
            "DisplayInCurrencyEnabled": "on",
            "LogConsumeEnabled": "on",
            "ApproximateTokenEnabled": "on",
        },
        **HTMX,
        **ENGLISH,
    )
    assert toast_of(response) == {"level": "success", "message": "Settings saved."}
    html = page_html(response)
    assert html.lstrip().startswith('<section id="options-general"') and "<html" not in html
    # DisplayTokenStatEnabled was on (default) and is absent from the post: now off.
    assert stored() == {"ApproximateTokenEnabled": "true", "DisplayTokenStatEnabled": "false"}


def test_an_invalid_number_shows_the_error_and_changes_nothing(people: People) -> None:
    response = post_group(
        people,
        "operation",
        "channels",
        {
            "RetryTimes": "3",
            "ChannelDisableThreshold": "soon",
            "AutomaticDisableChannelEnabled": "on",
        },
        **HTMX,
        **ENGLISH,
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="opt-ChannelDisableThreshold-error"' in html and "Must be a number." in html
    assert 'value="soon"' in html  # what was typed stays in the form
    assert toast_of(response) == {"level": "error", "message": "Must be a number."}
    assert stored() == {}
    assert options.get_int("RetryTimes") == 0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"gpt-4": 15,}', "Not valid JSON: Expecting property name enclosed in double quotes"),
        ('{"gpt-4": "15"}', "Must be a JSON object mapping names to numbers."),
        ("[1, 2]", "Must be a JSON object mapping names to numbers."),
    ],
)
def test_invalid_ratio_json_is_refused_with_its_reason(
    people: People, value: str, message: str
) -> None:
    before = options.get_str("ModelRatio")
    response = post_group(
        people,
        "ratios",
        "ratios",
        {
            "ModelRatio": value,
            "CompletionRatio": '{"gpt-4": 2}',
            "GroupRatio": options.get_str("GroupRatio"),
        },
        **ENGLISH,
    )
    assert response.status_code == 422
    html = response.content.decode()
    assert message in html and 'id="opt-ModelRatio-error"' in html
    assert stored() == {}  # CompletionRatio, valid, was not saved either
    assert options.get_str("ModelRatio") == before


def test_valid_ratio_json_is_saved_and_used(people: People) -> None:
    ratios = {"gpt-4": 15, "my-model": 0.5}
    response = post_group(
        people,
        "ratios",
        "ratios",
        {
            "ModelRatio": json.dumps(ratios),
            "CompletionRatio": options.get_str("CompletionRatio"),
            "GroupRatio": '{"default": 1, "vip": 0.8}',
        },
    )
    assert response.status_code == 302
    assert json.loads(stored()["ModelRatio"]) == ratios
    assert options.get_json("GroupRatio") == {"default": 1, "vip": 0.8}
    assert set(stored()) == {"ModelRatio", "GroupRatio"}


def test_json_is_shown_indented_and_an_unchanged_one_is_not_rewritten(people: People) -> None:
    options.set_option("GroupRatio", '{"default":1,"vip":0.5}')
    html = page_html(people.client("root").get("/setting/system/ratios"))
    assert "{\n  &quot;default&quot;: 1,\n  &quot;vip&quot;: 0.5\n}" in html
    response = post_group(
        people,
        "ratios",
        "ratios",
        {
            "ModelRatio": options.get_str("ModelRatio"),
            "CompletionRatio": options.get_str("CompletionRatio"),
            "GroupRatio": '{\n  "default": 1,\n  "vip": 0.5\n}',
        },
    )
    assert response.status_code == 302
    assert stored() == {"GroupRatio": '{"default":1,"vip":0.5}'}


def test_group_rate_limits_are_validated(people: People) -> None:
    response = post_group(
        people, "ratios", "rate-limits", {"GroupRateLimits": '{"vip": {"rpm": -1}}'}, **ENGLISH
    )
    assert response.status_code == 422 and stored() == {}


def test_enabling_github_needs_its_client_id_and_both_can_be_saved_at_once(people: People) -> None:
    response = post_group(
        people,
        "system",
        "login",
        {"GitHubOAuthEnabled": "on", "PasswordLoginEnabled": "on"},
        **ENGLISH,
    )
    assert response.status_code == 422
    assert "Enter and save the GitHub client ID and secret" in response.content.decode()
    assert stored() == {}
    assert options.get_bool("GitHubOAuthEnabled") is False
    post_group(
        people,
        "system",
        "github",
        {"GitHubClientId": "Iv1.abc", "GitHubClientSecret": "s3cr3t-value"},
    )
    response = post_group(
        people,
        "system",
        "login",
        {
            "GitHubOAuthEnabled": "on",
            "PasswordLoginEnabled": "on",
            "PasswordRegisterEnabled": "on",
            "RegisterEnabled": "on",
        },
    )
    assert response.status_code == 302
    assert options.get_bool("GitHubOAuthEnabled") is True


def test_a_failed_save_leaves_no_rolled_back_value_in_this_process(people: People) -> None:
    # given: RegisterEnabled (on) is written first, then enabling GitHub fails its check,
    # which reads the options inside the transaction
    assert options.get_bool("RegisterEnabled") is True
    # when
    response = post_group(
        people,
        "system",
        "login",
        {"PasswordLoginEnabled": "on", "PasswordRegisterEnabled": "on", "GitHubOAuthEnabled": "on"},
    )
    # then: nothing stored, and this process does not serve the rolled-back value
    assert response.status_code == 422
    assert stored() == {}
    assert options.get_bool("RegisterEnabled") is True
    assert 'id="opt-RegisterEnabled"' in response.content.decode()


# --- secrets ---------------------------------------------------------------------------------


def test_every_secret_option_is_write_only_on_the_page() -> None:
    shown = {f.key: f for s in option_settings.SECTIONS for g in s.groups for f in g.fields}
    for key in options.default_options():
        if is_secret(key) and key in shown:
            assert shown[key].secret, key
    assert shown["TurnstileSecretKey"].secret


def test_secrets_are_never_shown_and_blank_keeps_them(people: People) -> None:
    options.set_option("SMTPToken", "smtp-password-xyz")
    options.set_option("GitHubClientSecret", "gh-secret-xyz")
    options.set_option("TurnstileSecretKey", "ts-secret-xyz")
    client = people.client("root")
    html = "".join(
        page_html(client.get(f"/setting/system/{section}", headers=ENGLISH)) for section in SECTIONS
    )
    for secret in ("smtp-password-xyz", "gh-secret-xyz", "ts-secret-xyz"):
        assert secret not in html
    assert "A value is stored. It is never shown" in html

    smtp = {
        "SMTPServer": "smtp.example.com",
        "SMTPPort": "465",
        "SMTPAccount": "a",
        "SMTPFrom": "a@example.com",
    }
    response = post_group(people, "system", "smtp", {**smtp, "SMTPToken": ""}, **HTMX)
    assert "smtp-password-xyz" not in response.content.decode()
    assert options.get_str("SMTPToken") == "smtp-password-xyz"
    assert options.get_str("SMTPServer") == "smtp.example.com"
    post_group(people, "system", "smtp", {**smtp, "SMTPToken": "new-password"})
    assert options.get_str("SMTPToken") == "new-password"


def test_a_failed_save_does_not_echo_a_typed_secret(people: People) -> None:
    response = post_group(
        people,
        "system",
        "smtp",
        {
            "SMTPServer": "x",
            "SMTPPort": "many",
            "SMTPAccount": "",
            "SMTPFrom": "",
            "SMTPToken": "typed-secret",
        },
    )
    assert response.status_code == 422
    assert "typed-secret" not in response.content.decode()
    assert options.get_str("SMTPToken") == ""


# --- content and preview -------------------------------------------------------------------


def test_content_is_saved_and_shown_on_the_site(people: People) -> None:
    post_group(people, "content", "notice", {"Notice": "**Maintenance** tonight"})
    html = page_html(people.client("anonymous").get("/"))
    assert "<strong>Maintenance</strong> tonight" in html


def test_preview_renders_markdown_through_the_sanitizer(people: People) -> None:
    response = people.client("root").post(
        "/setting/system/preview",
        {"key": "About", "About": "# Hi\n\n<script>alert(1)</script><a href='javascript:x'>l</a>"},
        headers=HTMX,
    )
    html = page_html(response)
    assert "<h1>Hi</h1>" in html and "<script" not in html and "javascript:" not in html
    assert "About" not in stored()


def test_preview_of_a_url_shows_a_frame_and_of_nothing_says_so(people: People) -> None:
    client = people.client("root")
    framed = page_html(
        client.post(
            "/setting/system/preview",
            {"key": "HomePageContent", "HomePageContent": "https://example.com/home"},
        )
    )
    assert '<iframe class="content-frame" src="https://example.com/home"' in framed
    empty = page_html(
        client.post("/setting/system/preview", {"key": "Footer", "Footer": ""}, headers=ENGLISH)
    )
    assert "Nothing to show" in empty
    assert (
        client.post("/setting/system/preview", {"key": "SMTPToken", "SMTPToken": "x"}).status_code
        == 404
    )
