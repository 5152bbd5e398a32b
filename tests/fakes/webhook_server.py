"""A local webhook receiver: a real aiohttp server that records every request.

It stands in for Message Pusher (or any HTTP alert target). It answers Message Pusher's
`{"success": true, "message": ""}` unless told otherwise, and runs on its own event loop in a
daemon thread, so synchronous tests, async tests and other processes can all post to it.

    with WebhookServer() as hook:
        ...  # point MessagePusherAddress at hook.url
        assert hook.wait_for(1)[0].json["title"] == "..."
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Self

from aiohttp import web

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


class WebhookServer:
    """Set `status`, `reply` (a JSON-able value or raw bytes) and `delay` at any time."""

    def __init__(self, host: str = "127.0.0.1", path: str = "/push/root") -> None:
        self.host = host
        self.path = path
        self.status = 200
        self.reply: Any = {"success": True, "message": ""}
        self.delay = 0.0
        self._received: list[Received] = []
        self._condition = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("WebhookServer is not started")
        return f"http://{self.host}:{self._port}{self.path}"

    @property
    def received(self) -> list[Received]:
        with self._condition:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Block until `count` requests arrived; raises TimeoutError with what did."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._received)} of {count} webhook requests")
                self._condition.wait(left)
            return list(self._received)

    def start(self) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-webhook", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self._startup(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = None
        self._port = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _startup(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # Handlers still sleeping (a slow-receiver test) are cancelled at shutdown.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def _shutdown(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.method,
            request.path,
            {name.lower(): value for name, value in request.headers.items()},
            await request.read(),
            time.monotonic(),
        )
        with self._condition:
            self._received.append(received)
            self._condition.notify_all()
        if self.delay and self._stopping is not None:
            # Sleep, but wake at once when the server stops.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.delay)
        if isinstance(self.reply, bytes):
            return web.Response(status=self.status, body=self.reply)
        return web.json_response(self.reply, status=self.status)
