"""Drives the relay's ASGI app in-process, for tests that need no separate server.

The app runs on a fresh event loop in a worker thread (asgiref's `async_to_sync`), and its
database calls (`sync_to_async(thread_sensitive=True)`) come back to the test's thread, so
they see the test's transaction. Upstreams are real local HTTP servers all the same.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from asgiref.sync import async_to_sync

from relay import monitor
from relay.http import RelayApp
from relay.routes import error_shape, resolve
from relay.upstream import close_client


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes
    frames: list[bytes] = field(default_factory=list)

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def events(self) -> list[Any]:
        """The `data:` payloads of an SSE body, decoded ([DONE] stays a string)."""
        out: list[Any] = []
        for block in self.body.split(b"\n\n"):
            if block.startswith(b"data: "):
                payload = block[6:]
                out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
        return out


class RelayClient:
    def __init__(self, key: str | None = None, client_ip: str = "127.0.0.1") -> None:
        self.app = RelayApp(resolve, error_shape)
        self.key = key
        self.client_ip = client_ip

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        disconnect_after_frames: int | None = None,
    ) -> Result:
        all_headers = {"content-type": "application/json"}
        if self.key is not None:
            all_headers["authorization"] = f"Bearer {self.key}"
        all_headers.update(headers or {})
        content = body if body is not None else (orjson.dumps(json) if json is not None else b"")
        return async_to_sync(self._run)(method, path, content, all_headers, disconnect_after_frames)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> Result:
        return self.request("POST", path, json, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Result:
        return self.request("GET", path, **kwargs)

    async def _run(
        self,
        method: str,
        path: str,
        content: bytes,
        headers: dict[str, str],
        disconnect_after_frames: int | None,
    ) -> Result:
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http",
            "method": method,
            "path": raw_path,
            "query_string": query.encode(),
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": (self.client_ip, 50000),
        }
        sent_body = False
        disconnected = asyncio.Event()
        if disconnect_after_frames == 0:
            disconnected.set()  # the client leaves as soon as its request is sent
        status = 0
        response_headers: dict[str, str] = {}
        frames: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": content, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message["headers"]:
                    response_headers[name.decode()] = value.decode()
            elif message["type"] == "http.response.body" and message.get("body"):
                frames.append(message["body"])
                if disconnect_after_frames is not None and len(frames) >= disconnect_after_frames:
                    disconnected.set()

        try:
            await self.app(scope, receive, send)
            await monitor.drain()
        finally:
            await close_client()
        return Result(status, response_headers, b"".join(frames), frames)
