"""The root's system settings page: which options it shows, in which groups, and saving a
group of them with `/api/option`'s own validation (`oneapi.api_views.validate_option`).

Secrets are write-only: never rendered back, and a blank input keeps the stored value. A group
is saved all or nothing: one invalid value and no option of the group changes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.template import TemplateDoesNotExist, loader
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from dashboard import markup
from oneapi import caching, options
from oneapi.api import ApiError
from oneapi.api_views import THEMES, is_secret, validate_option

TEXT, TEXTAREA, TOGGLE, NUMBER, SECRET, JSON, CHOICE = (
    "text",
    "textarea",
    "toggle",
    "number",
    "secret",
    "json",
    "choice",
)
# Options the relay or the login code treats as secrets though their name does not end in
# Token or Secret (which is all `/api/option` hides).
EXTRA_SECRETS = frozenset({"TurnstileSecretKey"})
# Texts shown as pages: a preview renders them as the public pages do.
PREVIEWED = frozenset({"Notice", "About", "HomePageContent", "Footer"})


@dataclass(frozen=True)
class Field:
    key: str
    label: str | Promise
    kind: str = TEXT
    help: str | Promise = ""

    @property
    def secret(self) -> bool:
        return self.kind == SECRET

    @property
    def previewed(self) -> bool:
        return self.key in PREVIEWED


@dataclass(frozen=True)
class Group:
    slug: str
    title: str | Promise
    fields: tuple[Field, ...]
    help: str | Promise = ""


@dataclass(frozen=True)
class Section:
    slug: str
    title: str | Promise
    groups: tuple[Group, ...]


SECTIONS: tuple[Section, ...] = (
    Section(
        "system",
        _("System"),
        (
            Group(
                "general",
                _("General"),
                (
                    Field(
                        "ServerAddress",
                        _("Server address"),
                        help=_("The public address of this site, used in emails and OAuth."),
                    ),
                ),
            ),
            Group(
                "login",
                _("Sign-in and registration"),
                (
                    Field("PasswordLoginEnabled", _("Allow sign-in with a password"), TOGGLE),
                    Field("RegisterEnabled", _("Allow new registrations"), TOGGLE),
                    Field(
                        "PasswordRegisterEnabled", _("Allow registration with a password"), TOGGLE
                    ),
                    Field(
                        "EmailVerificationEnabled",
                        _("Require email verification on registration"),
                        TOGGLE,
                    ),
                    Field("GitHubOAuthEnabled", _("Allow sign-in with GitHub"), TOGGLE),
                    Field("WeChatAuthEnabled", _("Allow sign-in with WeChat"), TOGGLE),
                    Field("TurnstileCheckEnabled", _("Require a Turnstile check"), TOGGLE),
                ),
                _("Enabling GitHub, WeChat or Turnstile needs their settings saved first."),
            ),
            Group(
                "email-domains",
                _("Email domains"),
                (
                    Field(
                        "EmailDomainRestrictionEnabled",
                        _("Accept only the listed email domains"),
                        TOGGLE,
                    ),
                    Field(
                        "EmailDomainWhitelist",
                        _("Allowed email domains"),
                        help=_("Comma-separated, e.g. gmail.com,qq.com"),
                    ),
                ),
            ),
            Group(
                "smtp",
                _("SMTP (outgoing email)"),
                (
                    Field("SMTPServer", _("SMTP server")),
                    Field("SMTPPort", _("SMTP port"), NUMBER),
                    Field("SMTPAccount", _("SMTP account")),
                    Field("SMTPFrom", _("Sender address")),
                    Field("SMTPToken", _("SMTP password or token"), SECRET),
                ),
            ),
            Group(
                "github",
                _("GitHub OAuth"),
                (
                    Field("GitHubClientId", _("GitHub client ID")),
                    Field("GitHubClientSecret", _("GitHub client secret"), SECRET),
                ),
                _("Callback URL: <server address>/oauth/github"),
            ),
            Group(
                "lark",
                _("Feishu (Lark) OAuth"),
                (
                    Field("LarkClientId", _("Feishu app ID")),
                    Field("LarkClientSecret", _("Feishu app secret"), SECRET),
                ),
                _("Callback URL: <server address>/oauth/lark"),
            ),
            Group(
                "wechat",
                _("WeChat sign-in"),
                (
                    Field("WeChatServerAddress", _("WeChat server address")),
                    Field("WeChatServerToken", _("WeChat server token"), SECRET),
                    Field("WeChatAccountQRCodeImageURL", _("QR code image URL")),
                ),
            ),
            Group(
                "turnstile",
                _("Cloudflare Turnstile"),
                (
                    Field("TurnstileSiteKey", _("Turnstile site key")),
                    Field("TurnstileSecretKey", _("Turnstile secret key"), SECRET),
                ),
            ),
            Group(
                "message-pusher",
                _("Message Pusher"),
                (
                    Field("MessagePusherAddress", _("Message Pusher address")),
                    Field("MessagePusherToken", _("Message Pusher token"), SECRET),
                ),
                _("Where alerts to root are sent, besides email."),
            ),
        ),
    ),
    Section(
        "operation",
        _("Operation"),
        (
            Group(
                "quota",
                _("Quota"),
                (
                    Field("QuotaForNewUser", _("Quota of a new user"), NUMBER),
                    Field("QuotaForInviter", _("Quota for the inviter"), NUMBER),
                    Field("QuotaForInvitee", _("Quota for the invited user"), NUMBER),
                    Field(
                        "PreConsumedQuota",
                        _("Pre-consumed quota"),
                        NUMBER,
                        _("Reserved before a request and settled after it."),
                    ),
                    Field(
                        "QuotaRemindThreshold",
                        _("Low-quota reminder threshold"),
                        NUMBER,
                        _("Users are emailed when their quota falls below this."),
                    ),
                    Field("QuotaPerUnit", _("Quota per US dollar"), NUMBER),
                ),
                _("In quota points."),
            ),
            Group(
                "links",
                _("Links"),
                (
                    Field("TopUpLink", _("Top-up link"), help=_("Shown on the top-up page.")),
                    Field("ChatLink", _("Chat link")),
                ),
            ),
            Group(
                "channels",
                _("Channels and retries"),
                (
                    Field(
                        "RetryTimes",
                        _("Retries"),
                        NUMBER,
                        _("How many other channels a failed request is retried on."),
                    ),
                    Field(
                        "AutomaticDisableChannelEnabled",
                        _("Disable a channel when it fails"),
                        TOGGLE,
                    ),
                    Field(
                        "AutomaticEnableChannelEnabled",
                        _("Enable a channel again when its test succeeds"),
                        TOGGLE,
                    ),
                    Field(
                        "ChannelDisableThreshold",
                        _("Response time limit (seconds)"),
                        NUMBER,
                        _("Channel tests slower than this disable the channel."),
                    ),
                ),
            ),
            Group(
                "general",
                _("Display and logs"),
                (
                    Field("DisplayInCurrencyEnabled", _("Show quota as US dollars"), TOGGLE),
                    Field("DisplayTokenStatEnabled", _("Show key usage to clients"), TOGGLE),
                    Field(
                        "ApproximateTokenEnabled",
                        _("Count tokens approximately (faster)"),
                        TOGGLE,
                    ),
                    Field("LogConsumeEnabled", _("Log every consumption"), TOGGLE),
                    Field(
                        "MetricsToken",
                        _("Metrics token"),
                        SECRET,
                        _("The bearer token of /metrics; empty: no such endpoint."),
                    ),
                ),
            ),
        ),
    ),
    Section(
        "ratios",
        _("Ratios"),
        (
            Group(
                "ratios",
                _("Ratios"),
                (
                    Field(
                        "ModelRatio",
                        _("Model ratios"),
                        JSON,
                        _("A JSON object: model name to ratio (1 = $0.002 per 1K tokens)."),
                    ),
                    Field(
                        "CompletionRatio",
                        _("Completion ratios"),
                        JSON,
                        _("A JSON object: model name to the price of output over input."),
                    ),
                    Field(
                        "GroupRatio",
                        _("Group ratios"),
                        JSON,
                        _("A JSON object: user group to ratio."),
                    ),
                ),
            ),
            Group(
                "rate-limits",
                _("Rate limits by group"),
                (
                    Field(
                        "GroupRateLimits",
                        _("Group rate limits"),
                        JSON,
                        _('For example {"vip": {"rpm": 60, "tpm": 100000, "concurrency": 5}}'),
                    ),
                ),
            ),
        ),
    ),
    Section(
        "content",
        _("Content"),
        (
            Group(
                "site",
                _("Site"),
                (
                    Field("SystemName", _("System name")),
                    Field("Logo", _("Logo URL")),
                    Field("Theme", _("Theme"), CHOICE),
                ),
            ),
            Group(
                "notice",
                _("Notice"),
                (Field("Notice", _("Notice"), TEXTAREA, _("Markdown, shown above every page.")),),
            ),
            Group(
                "home",
                _("Home page"),
                (
                    Field(
                        "HomePageContent",
                        _("Home page content"),
                        TEXTAREA,
                        _("Markdown, or a URL to show in a frame; empty: the built-in page."),
                    ),
                ),
            ),
            Group(
                "about",
                _("About"),
                (
                    Field(
                        "About", _("About"), TEXTAREA, _("Markdown, or a URL to show in a frame.")
                    ),
                ),
            ),
            Group(
                "footer",
                _("Footer"),
                (Field("Footer", _("Footer"), TEXTAREA, _("HTML; empty: the default footer.")),),
            ),
        ),
    ),
)


def section(slug: str) -> Section | None:
    return next((s for s in SECTIONS if s.slug == slug), None)


def group(section_slug: str, group_slug: str) -> Group | None:
    found = section(section_slug)
    return next((g for g in found.groups if g.slug == group_slug), None) if found else None


def is_write_only(key: str) -> bool:
    return is_secret(key) or key in EXTRA_SECRETS


def theme_choices() -> list[str]:
    """The themes `/api/option` accepts that have templates here."""
    found = []
    for name in THEMES:
        try:
            loader.get_template(f"themes/{name}/base.html")
        except TemplateDoesNotExist:
            continue
        found.append(name)
    return found or [settings.THEME]


@dataclass(frozen=True)
class FieldState:
    """A field as the form shows it: its value (never a secret's), and its error."""

    field: Field
    value: str
    is_set: bool  # for secrets: whether a value is stored
    error: str = ""

    @property
    def checked(self) -> bool:
        return self.value == "true"


def field_states(
    grp: Group, submitted: Mapping[str, str] | None = None, errors: Mapping[str, str] | None = None
) -> list[FieldState]:
    """What a group's form shows: the stored values, or what was submitted (after an error)."""
    stored = options.all_options()
    states = []
    for item in grp.fields:
        current = stored.get(item.key, "")
        if item.secret:
            value = ""
        elif submitted is not None and item.key in submitted:
            value = submitted[item.key]
        elif item.kind == JSON:
            value = pretty_json(current)
        else:
            value = current
        states.append(FieldState(item, value, bool(current), (errors or {}).get(item.key, "")))
    return states


def submitted_values(grp: Group, data: Mapping[str, str]) -> dict[str, str]:
    """A posted form as option values: checkboxes as true/false, absent ones false."""
    values = {}
    for item in grp.fields:
        if item.kind == TOGGLE:
            values[item.key] = "true" if data.get(item.key) in ("on", "true", "1") else "false"
        else:
            values[item.key] = str(data.get(item.key, ""))
    return values


def changes(grp: Group, values: Mapping[str, str]) -> dict[str, str]:
    """The options of `grp` whose value differs from the stored one; a blank secret is kept."""
    stored = options.all_options()
    changed = {}
    for item in grp.fields:
        value = values.get(item.key, "")
        if item.kind in (TEXT, NUMBER, SECRET):
            value = value.strip()
        if item.secret and not value:
            continue
        if item.kind == JSON and same_json(value, stored.get(item.key, "")):
            continue  # shown indented, stored as it was written: not a change
        if value != stored.get(item.key, ""):
            changed[item.key] = value
    return changed


def pretty_json(text: str) -> str:
    """A JSON option indented one entry a line, for editing; anything unparsable as is."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def same_json(first: str, second: str) -> bool:
    try:
        return bool(json.loads(first) == json.loads(second))
    except ValueError:
        return False


class OptionError(Exception):
    def __init__(self, key: str, error: ApiError) -> None:
        super().__init__(error.message)
        self.key = key
        self.error = error


def save_options(changed: Mapping[str, str]) -> None:
    """Validate and store `changed` in one transaction: all or nothing.

    Switches are written last, so enabling GitHub sign-in in the same save as its client ID
    passes `validate_option`'s check that the ID is stored (it reads the stored options).
    """
    ordered = sorted(changed.items(), key=lambda item: item[1] in ("true", "false"))
    try:
        with transaction.atomic():
            for key, value in ordered:
                try:
                    validate_option(key, value)
                except ApiError as error:
                    raise OptionError(key, error) from None
                options.set_option(key, value)
    except OptionError:
        # The checks above read the options from inside the transaction, so this process's
        # snapshot may hold values that were just rolled back: drop it.
        caching.run_handlers(caching.OPTIONS, "")
        raise


def preview(key: str, text: str) -> markup.Content:
    """`text` rendered as the site would show option `key`."""
    if key == "Footer":
        return markup.Content(html=markup.sanitize(text))
    return markup.option_content(text)
