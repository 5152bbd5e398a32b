"""`/metrics`: off without MetricsToken, bearer-protected, Prometheus text with channel health."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from channels_mgmt.models import ChannelStatus
from channels_mgmt.services import set_channel_status
from oneapi import api_views
from oneapi.options import set_option
from tests.factories import make_channel

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-please"


def scrape(client: Client, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.get("/metrics", headers=headers)


def samples(body: bytes, name: str) -> dict[str, float]:
    """{channel id: value} of one metric in an exposition body."""
    for family in text_string_to_metric_families(body.decode()):
        if family.name == name:
            return {sample.labels["channel"]: sample.value for sample in family.samples}
    return {}


def test_without_a_token_option_the_endpoint_does_not_exist(client: Client) -> None:
    assert scrape(client).status_code == 404
    assert scrape(client, None).status_code == 404


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
def test_a_wrong_or_missing_token_is_refused(client: Client, token: str | None) -> None:
    set_option("MetricsToken", TOKEN)
    response = scrape(client, token)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"oneapi_" not in response.content


def test_the_right_token_gets_prometheus_text(client: Client) -> None:
    set_option("MetricsToken", TOKEN)
    response = scrape(client)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "oneapi_relay_requests",
        "oneapi_relay_request_duration_seconds",
        "oneapi_relay_requests_in_flight",
        "oneapi_upstream_attempts",
        "oneapi_relay_tokens",
        "oneapi_relay_quota",
        "oneapi_channel_enabled",
    } <= names


def test_only_safe_methods_are_served(client: Client) -> None:
    set_option("MetricsToken", TOKEN)
    response = client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 405


def test_channel_health_reflects_disabled_channels(client: Client) -> None:
    set_option("MetricsToken", TOKEN)
    enabled = make_channel()
    manual = make_channel(status=ChannelStatus.MANUALLY_DISABLED)
    auto = make_channel()

    health = samples(scrape(client).content, "oneapi_channel_enabled")
    assert health[str(auto.pk)] == 1.0
    set_channel_status(auto.pk, ChannelStatus.AUTO_DISABLED)
    health = samples(scrape(client).content, "oneapi_channel_enabled")

    assert health[str(enabled.pk)] == 1.0
    assert health[str(manual.pk)] == 0.0
    assert health[str(auto.pk)] == 0.0


def test_the_token_is_a_secret_option() -> None:
    # Secret options are left out of GET /api/option like One API's *Token options.
    assert api_views.is_secret("MetricsToken")
