"""The admin services' failure messages (One API's Chinese texts) in the visitor's language,
for the Users, Redemption codes and System settings pages. Anything not listed here goes on
to `dashboard.service_errors`, which shows unknown messages as they are."""

from __future__ import annotations

import re

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy

from accounts import services as accounts
from billing import services as billing
from dashboard import service_errors
from oneapi.api import ApiError

MESSAGES: dict[str, str | Promise] = {
    accounts.USER_NOT_FOUND: gettext_lazy("This user does not exist."),
    accounts.CANNOT_READ_PEER: gettext_lazy(
        "You may not see users of your own role or a higher one."
    ),
    accounts.CANNOT_UPDATE_PEER: gettext_lazy(
        "You may not change users of your own role or a higher one."
    ),
    accounts.CANNOT_RAISE_ROLE: gettext_lazy(
        "You may not give a user a role equal to or above your own."
    ),
    accounts.CANNOT_CREATE_PEER: gettext_lazy(
        "You may not create a user with a role equal to or above your own."
    ),
    accounts.CANNOT_DELETE_PEER: gettext_lazy(
        "You may not delete users of your own role or a higher one."
    ),
    accounts.CANNOT_DISABLE_ROOT: gettext_lazy("The root user cannot be disabled."),
    accounts.CANNOT_DELETE_ROOT: gettext_lazy("The root user cannot be deleted."),
    accounts.ONLY_ROOT_PROMOTES: gettext_lazy("Only the root user may make admins."),
    accounts.ALREADY_ADMIN: gettext_lazy("This user is already an admin."),
    accounts.CANNOT_DEMOTE_ROOT: gettext_lazy("The root user cannot be demoted."),
    accounts.ALREADY_COMMON: gettext_lazy("This user is already a common user."),
    accounts.QUOTA_CHANGED: gettext_lazy("The user's quota is changing; try again."),
    billing.REDEMPTION_NOT_FOUND: gettext_lazy("This redemption code does not exist."),
    billing.REDEMPTION_USED: gettext_lazy(
        "This code has been redeemed: its status can no longer change."
    ),
    # The checks of oneapi.api_views.validate_option on enabling a login method.
    "无法启用 GitHub OAuth，请先填入 GitHub Client Id 以及 GitHub Client Secret！": gettext_lazy(
        "Enter and save the GitHub client ID and secret before enabling GitHub sign-in."
    ),
    "无法启用微信登录，请先填入微信登录相关配置信息！": gettext_lazy(
        "Enter and save the WeChat server settings before enabling WeChat sign-in."
    ),
    "无法启用 Turnstile 校验，请先填入 Turnstile 校验相关配置信息！": gettext_lazy(
        "Enter and save the Turnstile site key before enabling Turnstile."
    ),
    "无法启用邮箱域名限制，请先填入限制的邮箱域名！": gettext_lazy(
        "Enter the allowed email domains before restricting sign-ups to them."
    ),
    "无效的主题": gettext_lazy("This theme does not exist."),
}

# `validate_option` prefixes its per-value messages with the option's key.
_OPTION_PATTERNS: tuple[tuple[re.Pattern[str], Promise], ...] = (
    (re.compile(r"必须是 true 或 false"), gettext_lazy("Must be on or off.")),
    (re.compile(r"必须是数字"), gettext_lazy("Must be a number.")),
    (
        re.compile(r"不是合法的 JSON：(?P<detail>.*)", re.S),
        gettext_lazy("Not valid JSON: %(detail)s"),
    ),
    (
        re.compile(r"必须是名称到数字的 JSON 对象"),
        gettext_lazy("Must be a JSON object mapping names to numbers."),
    ),
)


def explain(error: ApiError | str) -> str:
    message = error.message if isinstance(error, ApiError) else error
    if message in MESSAGES:
        return str(MESSAGES[message])
    return service_errors.explain(message)


def explain_option(key: str, error: ApiError) -> str:
    """A `validate_option` failure for option `key`, without the key (shown at its field)."""
    message = error.message.removeprefix(f"{key}: ")
    for pattern, text in _OPTION_PATTERNS:
        found = pattern.fullmatch(message)
        if found:
            return str(text) % found.groupdict() if found.groupdict() else str(text)
    return explain(message)
