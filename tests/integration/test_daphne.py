from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_real_daphne_answers_api_status(live_daphne: str) -> None:
    response = httpx.get(live_daphne + "/api/status", timeout=10)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == ""
    assert body["data"]["system_name"] == "One API"
    assert body["data"]["quota_per_unit"] == 500000
