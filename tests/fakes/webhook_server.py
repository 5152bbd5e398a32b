"""A local webhook receiver: a real aiohttp server that records every request.

It stands in for Message Pusher (or any HTTP alert target). It answers Message Pusher's
`{"success": true, "message": ""}` unless told otherwise, and runs on its own event loop in a
daemon thread, so synchronous tests, async tests and other processes can all post to it.

    with WebhookServer() as hook:
        ...  # point MessagePusherAddress at hook.url
        assert hook.wait_for(1)[0].json["title"] == "..."
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, ServerStopping, lower_headers

__all__ = ["Received", "WebhookServer"]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer(FakeServer[Received]):
    """Set `status`, `reply` (a JSON-able value or raw bytes) and `delay` at any time."""

    thread_name = "fake-webhook"
    client_max_size = 1024**2  # aiohttp's default: alerts are small
    # Handlers still sleeping (a slow-receiver test) are cancelled at shutdown.
    handler_cancellation = True

    def __init__(self, host: str = "127.0.0.1", path: str = "/push/root") -> None:
        super().__init__(host)
        self.path = path
        self.status = 200
        self.reply: Any = {"success": True, "message": ""}
        self.delay = 0.0
        # On the lock that guards the records, so wait_for() wakes as each one arrives.
        self._condition = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.path}"

    @property
    def received(self) -> list[Received]:
        return self.requests

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until `count` requests arrived; raises TimeoutError with what did."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self._requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._requests)} of {count} webhook requests")
                self._condition.wait(left)
            return list(self._requests)

    def _record(self, request: web.Request, body: bytes) -> Received:
        return Received(
            request.method, request.path, lower_headers(request), body, time.monotonic()
        )

    def _remember(self, recorded: Received) -> Received:
        with self._condition:
            self._requests.append(recorded)
            self._condition.notify_all()
        return recorded

    async def route(
        self, request: web.Request, recorded: Received, scenario: str
    ) -> web.StreamResponse:
        if self.delay:
            with contextlib.suppress(ServerStopping):
                await self._sleep(self.delay)
        if isinstance(self.reply, bytes):
            return web.Response(status=self.status, body=self.reply)
        return web.json_response(self.reply, status=self.status)
