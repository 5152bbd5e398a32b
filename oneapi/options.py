"""One API's options (the `options` table), served from a process-local snapshot.

Reads never touch the database once the snapshot is loaded; `set_option` writes the row and
invalidates the snapshot in every process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

from oneapi import caching

EMAIL_DOMAIN_WHITELIST = (
    "gmail.com,163.com,126.com,qq.com,outlook.com,hotmail.com,icloud.com,yahoo.com,foxmail.com"
)


def default_options() -> dict[str, str]:
    from billing import ratio_defaults

    return {
        "SystemName": "One API",
        "Logo": "",
        "Footer": "",
        "Notice": "",
        "About": "",
        "HomePageContent": "",
        "Theme": settings.THEME,
        "ServerAddress": "",
        "PasswordLoginEnabled": "true",
        "PasswordRegisterEnabled": "true",
        "RegisterEnabled": "true",
        "EmailVerificationEnabled": "false",
        "EmailDomainRestrictionEnabled": "false",
        "EmailDomainWhitelist": EMAIL_DOMAIN_WHITELIST,
        "SMTPServer": "",
        "SMTPPort": "587",
        "SMTPAccount": "",
        "SMTPFrom": "",
        "SMTPToken": "",
        "GitHubOAuthEnabled": "false",
        "GitHubClientId": "",
        "GitHubClientSecret": "",
        "LarkClientId": "",
        "LarkClientSecret": "",
        "OidcEnabled": "false",
        "OidcClientId": "",
        "OidcClientSecret": "",
        "OidcWellKnown": "",
        "OidcAuthorizationEndpoint": "",
        "OidcTokenEndpoint": "",
        "OidcUserinfoEndpoint": "",
        "WeChatAuthEnabled": "false",
        "WeChatServerAddress": "",
        "WeChatServerToken": "",
        "WeChatAccountQRCodeImageURL": "",
        "TurnstileCheckEnabled": "false",
        "TurnstileSiteKey": "",
        "TurnstileSecretKey": "",
        "MessagePusherAddress": "",
        "MessagePusherToken": "",
        "QuotaForNewUser": "0",
        "QuotaForInviter": "0",
        "QuotaForInvitee": "0",
        "QuotaRemindThreshold": "1000",
        "PreConsumedQuota": "500",
        "QuotaPerUnit": "500000",
        "DisplayInCurrencyEnabled": "true",
        "DisplayTokenStatEnabled": "true",
        "TopUpLink": "",
        "ChatLink": "",
        "RetryTimes": "0",
        "AutomaticDisableChannelEnabled": "false",
        "AutomaticEnableChannelEnabled": "false",
        "ChannelDisableThreshold": "5",
        "ApproximateTokenEnabled": "false",
        "LogConsumeEnabled": "true",
        # The bearer token of /metrics; empty = no such endpoint (404).
        "MetricsToken": "",
        "ModelRatio": json.dumps(ratio_defaults.DEFAULT_MODEL_RATIO),
        "CompletionRatio": json.dumps(ratio_defaults.DEFAULT_COMPLETION_RATIO),
        "GroupRatio": json.dumps(ratio_defaults.DEFAULT_GROUP_RATIO),
        # Per-user rate limits by group: {"vip": {"rpm": 60, "tpm": 100000, "concurrency": 5}}
        "GroupRateLimits": "{}",
    }


class OptionSnapshot:
    """All options as strings, plus memoised parsed values; replaced whole on reload.

    The relay takes one snapshot per request and reads it without I/O (an async view must not
    trigger a reload from the database in the middle of a request).
    """

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self._parsed: dict[tuple[str, str], Any] = {}

    def parsed(self, key: str, kind: str, parse: Callable[[str], Any]) -> Any:
        cache_key = (key, kind)
        try:
            return self._parsed[cache_key]
        except KeyError:
            value = parse(self.values.get(key, ""))
            self._parsed[cache_key] = value
            return value

    def get_str(self, key: str) -> str:
        return self.values.get(key, "")

    def get_bool(self, key: str) -> bool:
        return self.parsed(key, "bool", _parse_bool)

    def get_int(self, key: str) -> int:
        return self.parsed(key, "int", _parse_int)

    def get_float(self, key: str) -> float:
        return self.parsed(key, "float", _parse_float)

    def get_json(self, key: str) -> Any:
        return self.parsed(key, "json", _parse_json)


def _parse_bool(raw: str) -> bool:
    return raw.strip().lower() == "true"


def _parse_int(raw: str) -> int:
    try:
        return int(float(raw))
    except ValueError:
        return 0


def _parse_float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return 0.0


def _parse_json(raw: str) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def load_snapshot() -> OptionSnapshot:
    from oneapi.models import Option

    values = default_options()
    values.update(dict(Option.objects.values_list("key", "value")))
    return OptionSnapshot(values)


_snapshot = caching.Reloadable(caching.OPTIONS, load_snapshot)


def snapshot() -> OptionSnapshot:
    return _snapshot.get()


def get_str(key: str) -> str:
    return snapshot().get_str(key)


def get_bool(key: str) -> bool:
    return snapshot().get_bool(key)


def get_int(key: str) -> int:
    return snapshot().get_int(key)


def get_float(key: str) -> float:
    return snapshot().get_float(key)


def get_json(key: str) -> Any:
    return snapshot().get_json(key)


def all_options() -> dict[str, str]:
    return dict(snapshot().values)


@transaction.atomic
def set_option(key: str, value: str) -> None:
    """Store one option and make every process see it. Validation lives in the API layer."""
    from oneapi.models import Option

    Option.objects.update_or_create(key=key, defaults={"value": value})
    caching.invalidate(caching.OPTIONS)
