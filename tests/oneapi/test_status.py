from __future__ import annotations

import pytest
from django.conf import settings

from oneapi import caching, options

pytestmark = pytest.mark.django_db

STATUS_KEYS = {
    "version",
    "start_time",
    "email_verification",
    "github_oauth",
    "github_client_id",
    "lark_client_id",
    "system_name",
    "logo",
    "footer_html",
    "wechat_qrcode",
    "wechat_login",
    "server_address",
    "turnstile_check",
    "turnstile_site_key",
    "top_up_link",
    "chat_link",
    "quota_per_unit",
    "display_in_currency",
    "oidc",
    "oidc_client_id",
    "oidc_well_known",
    "oidc_authorization_endpoint",
    "oidc_token_endpoint",
    "oidc_userinfo_endpoint",
}


@pytest.fixture(autouse=True)
def _fresh_snapshot():
    caching.run_handlers(caching.OPTIONS, "")
    yield
    caching.run_handlers(caching.OPTIONS, "")


def test_status_shape(client):
    response = client.get("/api/status")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"success", "message", "data"}
    assert body["success"] is True
    assert body["message"] == ""
    data = body["data"]
    assert set(data) == STATUS_KEYS
    assert data["version"] == settings.VERSION
    assert isinstance(data["start_time"], int)
    assert data["system_name"] == "One API"
    assert data["quota_per_unit"] == 500000
    assert data["display_in_currency"] is True
    assert data["email_verification"] is False
    assert data["github_oauth"] is False
    assert data["oidc"] is False


def test_status_reflects_set_option(client):
    options.set_option("SystemName", "My Gateway")
    options.set_option("TurnstileCheckEnabled", "true")
    data = client.get("/api/status").json()["data"]
    assert data["system_name"] == "My Gateway"
    assert data["turnstile_check"] is True


def test_status_post_is_405(client):
    response = client.post("/api/status")
    assert response.status_code == 405
