"""RELAY_PROXY: every upstream request of a running gateway goes through the proxy.

A real Daphne with `RELAY_PROXY` pointing at a local proxy (an HTTP forward proxy, or a SOCKS5
proxy that wants a username and password) relays whole and streamed chat completions to
FakeOpenAI; the proxy must have carried each of them, and the answers and bills must be those
of a direct relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from billing.models import Log
from tests.fakes.http_proxy import HttpProxy
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fakes.socks_proxy import SocksProxy
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


@dataclass
class Relayed:
    answers: list[httpx.Response]
    logs: list[Log]
    upstream_requests: int
    upstream_address: tuple[str, int]


def relay_two_chats(upstream: FakeOpenAI, data_dir: Path, relay_proxy: str) -> Relayed:
    """A whole and a streamed completion through a gateway whose RELAY_PROXY is given."""
    upstream.chunk_delay = 0.0
    world = make_world(upstream, models=CHAT_MODEL)
    server = start_daphne(data_dir, RELAY_PROXY=relay_proxy)
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
    return Relayed(answers, logs, len(upstream.requests), (upstream.host, upstream.port))


def assert_relayed_as_direct(relayed: Relayed, reply: str) -> None:
    whole, streamed = relayed.answers
    assert whole.status_code == 200, whole.text
    assert whole.json()["choices"][0]["message"]["content"] == reply
    assert streamed.status_code == 200, streamed.text
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert [log.quota for log in relayed.logs] == [CHAT_QUOTA, CHAT_QUOTA]
    assert relayed.upstream_requests == 2


def test_upstream_requests_go_through_an_http_relay_proxy(tmp_path: Path) -> None:
    with FakeOpenAI(api_key="sk-upstream") as upstream, HttpProxy() as proxy:
        relayed = relay_two_chats(upstream, tmp_path / "node", proxy.url)
        completions = f"{upstream.base_url}/v1/chat/completions"
    assert_relayed_as_direct(relayed, upstream.reply)
    assert proxy.requests == [("POST", completions), ("POST", completions)]


def test_upstream_requests_go_through_a_socks5_relay_proxy(tmp_path: Path) -> None:
    with (
        FakeOpenAI(api_key="sk-upstream") as upstream,
        SocksProxy(username="relay", password="p@ss") as proxy,
    ):
        relayed = relay_two_chats(upstream, tmp_path / "node", proxy.url())
    assert_relayed_as_direct(relayed, upstream.reply)
    # Both requests may share one kept-alive connection: at least one CONNECT, all to it.
    assert proxy.connects
    assert set(proxy.connects) == {("relay", *relayed.upstream_address)}
    assert proxy.refused_logins == 0
