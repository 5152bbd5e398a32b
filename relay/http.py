"""The relay's own ASGI layer: requests in, responses out, no Django middleware in between.

The `/v1` routes need none of Django's request machinery (sessions, CSRF, templates), and
Django's handler runs its sync signal receivers in a worker thread on every request. This
layer reads the body once (with the size limit and gzip decoding), times out nothing on its
own, and streams responses frame by frame while watching for the client going away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

from oneapi.log_format import request_id_var
from relay import metrics
from relay.errors import RelayError, error_body
from relay.request_id import new_request_id

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
HeaderList = list[tuple[bytes, bytes]]

JSON_CONTENT_TYPE = b"application/json"
REQUEST_ID_HEADER = b"x-oneapi-request-id"


@dataclass
class Request:
    method: str
    path: str  # as the client sent it, /v1 prefix or not
    query_string: bytes
    headers: dict[str, str]  # lower-case names
    body: bytes
    client_ip: str
    request_id: str
    params: dict[str, str] = field(default_factory=dict)
    # The original request line, for messages (`Invalid URL (POST /v1/x)`).
    raw_path: str = ""

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name, default)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: bytes = JSON_CONTENT_TYPE
    headers: HeaderList = field(default_factory=list)


@dataclass
class StreamResponse:
    """A body produced frame by frame; the iterator's `finally` runs even when the client
    disconnects (the task running it is cancelled), which is where a stream settles its bill."""

    status: int
    frames: AsyncIterator[bytes]
    content_type: bytes = b"text/event-stream"
    headers: HeaderList = field(default_factory=list)
    # Runs after the body ended in any way, even when `frames` was never started (a client
    # that left before the first frame): the place to release what the stream holds.
    on_close: Callable[[], Awaitable[None]] | None = None


def json_response(status: int, data: Any, headers: HeaderList | None = None) -> Response:
    return Response(status, orjson.dumps(data), headers=headers or [])


def error_response(error: RelayError, request_id: str) -> Response:
    return json_response(error.status, error_body(error, request_id), error.headers)


Handler = Callable[[Request], Awaitable[Response | StreamResponse]]
ErrorResponder = Callable[[RelayError, str], Response]
Resolver = Callable[[str, str], tuple[Handler, dict[str, str]]]


class BodyTooLarge(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise asyncio.CancelledError("client went away before sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def gunzip(body: bytes, limit: int) -> bytes:
    """Decode a gzip request body without letting a small bomb expand past the limit."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decoder.decompress(body, limit + 1)
    except zlib.error as error:
        raise RelayError(400, f"invalid gzip request body: {error}") from error
    if len(data) > limit:
        raise BodyTooLarge
    return data


def cors_headers(request_headers: dict[str, str]) -> HeaderList:
    """One API allows every origin with credentials; echoing the origin is how a browser
    accepts that (a literal `*` is refused together with credentials)."""
    origin = request_headers.get("origin")
    if not origin:
        return []
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", b"X-Oneapi-Request-Id"),
        (b"vary", b"Origin"),
    ]


def preflight_response(request_headers: dict[str, str]) -> Response:
    allowed_headers = request_headers.get("access-control-request-headers", "*")
    return Response(
        204,
        content_type=b"",
        headers=[
            (b"access-control-allow-methods", b"GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers", allowed_headers.encode("latin-1")),
            (b"access-control-max-age", b"43200"),
        ],
    )


def _client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


_startup_frozen = False


def _freeze_startup_objects() -> None:
    """Move everything alive at the first request (modules, Django, settings, caches) out of
    the collector's reach: a full collection over them took ~50 ms, a stall every request in
    flight paid for, several times a minute under load."""
    global _startup_frozen
    _startup_frozen = True
    gc.collect()
    gc.freeze()


class RelayApp:
    """The ASGI application for relay paths."""

    def __init__(
        self, resolve: Resolver, error_shape: Callable[[str], ErrorResponder] | None = None
    ) -> None:
        self.resolve = resolve
        # Errors raised before a handler runs (413, bad gzip) in the format of the path's API.
        self.error_shape = error_shape or (lambda _path: error_response)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _startup_frozen:
            _freeze_startup_objects()
        request_id = new_request_id()
        # For as long as the request runs (its tasks and threads included), every log line
        # carries its id and the upstream metrics find its timings.
        id_token = request_id_var.set(request_id)
        tracker, tracker_token = metrics.start_request(scope["path"])
        try:
            await self._serve(scope, receive, send, request_id, tracker)
        finally:
            metrics.end_request(tracker, tracker_token)
            request_id_var.reset(id_token)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request_id: str,
        tracker: metrics.RequestTracker,
    ) -> None:
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", ())
        }
        extra = [(REQUEST_ID_HEADER, request_id.encode()), *cors_headers(headers)]
        method = scope["method"]
        if method == "OPTIONS" and "origin" in headers:
            await _send_response(send, preflight_response(headers), extra, tracker)
            return
        respond = self.error_shape(scope["path"])
        try:
            response = await self._handle(scope, receive, headers, request_id)
        except asyncio.CancelledError:
            raise
        except RelayError as error:
            response = respond(error, request_id)
        except BodyTooLarge:
            response = respond(
                RelayError(
                    413,
                    f"request body exceeds {settings.RELAY_MAX_BODY_SIZE} bytes",
                    code="request_body_too_large",
                ),
                request_id,
            )
        except Exception:
            logger.exception("relay panic (request id: %s)", request_id)
            response = respond(RelayError(500, "internal error", type="one_api_panic"), request_id)
        if isinstance(response, StreamResponse):
            await _send_stream(send, receive, response, extra, tracker)
        else:
            await _send_response(send, response, extra, tracker)

    async def _handle(
        self, scope: Scope, receive: Receive, headers: dict[str, str], request_id: str
    ) -> Response | StreamResponse:
        limit = settings.RELAY_MAX_BODY_SIZE
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        body = await read_body(receive, limit)
        if headers.get("content-encoding", "").strip().lower() == "gzip" and body:
            body = gunzip(body, limit)
        path = scope["path"]
        request = Request(
            method=scope["method"],
            path=path,
            query_string=scope.get("query_string", b""),
            headers=headers,
            body=body,
            client_ip=_client_ip(scope),
            request_id=request_id,
            raw_path=path,
        )
        handler, params = self.resolve(request.method, path)
        request.params = params
        return await handler(request)


def _start_message(status: int, content_type: bytes, headers: HeaderList) -> dict[str, Any]:
    all_headers = list(headers)
    if content_type:
        all_headers.append((b"content-type", content_type))
    return {"type": "http.response.start", "status": status, "headers": all_headers}


async def _send_response(
    send: Send, response: Response, extra: HeaderList, tracker: metrics.RequestTracker
) -> None:
    headers = [*response.headers, *extra, (b"content-length", str(len(response.body)).encode())]
    tracker.response_started(response.status, response.body)
    await send(_start_message(response.status, response.content_type, headers))
    await send({"type": "http.response.body", "body": response.body})


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _send_stream(
    send: Send,
    receive: Receive,
    response: StreamResponse,
    extra: HeaderList,
    tracker: metrics.RequestTracker,
) -> None:
    """Send frames as they come; if the client disconnects first, cancel the producer so the
    upstream request stops at once and the iterator's cleanup bills what was generated."""
    if response.status >= 400:
        send = tracker.wrap(send)  # the error's type is in the first frame (rare: see it there)
    headers = [
        *response.headers,
        *extra,
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),
    ]

    async def pump() -> None:
        if response.status < 400:
            tracker.response_started(response.status)
        await send(_start_message(response.status, response.content_type, headers))
        try:
            async for frame in response.frames:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        finally:
            await _close_iterator(response.frames)
        await send({"type": "http.response.body", "body": b""})

    producer = asyncio.ensure_future(pump())
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not producer.done():
            producer.cancel()
        watcher.cancel()
        await asyncio.gather(producer, watcher, return_exceptions=True)
        if response.on_close is not None:
            await response.on_close()
    if producer.done() and not producer.cancelled() and producer.exception() is not None:
        # The headers are out; all that is left is to end the connection.
        metrics.record_error("stream_failed")
        logger.error("relay stream failed", exc_info=producer.exception())


async def _close_iterator(frames: AsyncIterator[bytes]) -> None:
    close = getattr(frames, "aclose", None)
    if close is not None:
        await close()
