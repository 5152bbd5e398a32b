"""RELAY_PROXY: every upstream request of a running gateway goes through the proxy.

A real Daphne with `RELAY_PROXY` pointing at a local HTTP forward proxy relays whole and
streamed chat completions to FakeOpenAI; the proxy must have carried each of them, and the
answers and bills must be those of a direct relay.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakes.http_proxy import HttpProxy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.integration.relay_setup import (
    CHAT_MESSAGES,
    CHAT_MODEL,
    CHAT_QUOTA,
    make_world,
    start_daphne,
    wait_for_log_count,
    wait_for_routing,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_upstream_requests_go_through_the_relay_proxy(tmp_path: Path) -> None:
    with FakeOpenAI(api_key="sk-upstream") as upstream, HttpProxy() as proxy:
        upstream.chunk_delay = 0.0
        world = make_world(upstream, models=CHAT_MODEL)
        server = start_daphne(tmp_path / "node", RELAY_PROXY=proxy.url)
        try:
            wait_for_routing(server.base_url, world)
            answers = [
                httpx.post(
                    f"{server.base_url}/v1/chat/completions",
                    headers=world.auth_headers,
                    json={"model": CHAT_MODEL, "messages": CHAT_MESSAGES, "stream": stream},
                    timeout=30,
                )
                for stream in (False, True)
            ]
            logs = wait_for_log_count(world.user.pk, 2)
        finally:
            server.stop()
        completions = f"{upstream.base_url}/v1/chat/completions"
        upstream_requests = len(upstream.requests)
    whole, streamed = answers
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["message"]["content"] == upstream.reply
    assert streamed.status_code == 200, streamed.text
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert [log.quota for log in logs] == [CHAT_QUOTA, CHAT_QUOTA]
    assert proxy.requests == [("POST", completions), ("POST", completions)]
    assert upstream_requests == 2
