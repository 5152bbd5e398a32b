"""The data of `GET /api/status`, with One API's field names."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings

from oneapi import options

START_TIME = int(time.time())


def status_data() -> dict[str, Any]:
    return {
        "version": settings.VERSION,
        "start_time": START_TIME,
        "email_verification": options.get_bool("EmailVerificationEnabled"),
        "github_oauth": options.get_bool("GitHubOAuthEnabled"),
        "github_client_id": options.get_str("GitHubClientId"),
        "lark_client_id": options.get_str("LarkClientId"),
        "system_name": options.get_str("SystemName"),
        "logo": options.get_str("Logo"),
        "footer_html": options.get_str("Footer"),
        "wechat_qrcode": options.get_str("WeChatAccountQRCodeImageURL"),
        "wechat_login": options.get_bool("WeChatAuthEnabled"),
        "server_address": options.get_str("ServerAddress"),
        "turnstile_check": options.get_bool("TurnstileCheckEnabled"),
        "turnstile_site_key": options.get_str("TurnstileSiteKey"),
        "top_up_link": options.get_str("TopUpLink"),
        "chat_link": options.get_str("ChatLink"),
        "quota_per_unit": options.get_int("QuotaPerUnit"),
        "display_in_currency": options.get_bool("DisplayInCurrencyEnabled"),
        "oidc": options.get_bool("OidcEnabled"),
        "oidc_client_id": options.get_str("OidcClientId"),
        "oidc_well_known": options.get_str("OidcWellKnown"),
        "oidc_authorization_endpoint": options.get_str("OidcAuthorizationEndpoint"),
        "oidc_token_endpoint": options.get_str("OidcTokenEndpoint"),
        "oidc_userinfo_endpoint": options.get_str("OidcUserinfoEndpoint"),
    }
