from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.server import FakeServer, lower_headers

# A fake iFlytek Spark upstream: a real WebSocket server speaking the Spark v1 chat protocol.
#
#     with FakeXunfei(app_id="app", api_key="key", api_secret="secret") as fake:
#         fake.scenario = "function_call"
#         ...  # point the gateway at fake.base_url (ws://127.0.0.1:port)
#         assert fake.last_connection.frame["parameter"]["chat"]["domain"] == "generalv3.5"
#
# It serves Spark's paths (/v1.1/chat, /v2.1/chat, /v3.1/chat, /v3.5/chat, /v4.0/chat,
# /chat/pro-128k, /chat/max-32k). Before upgrading it checks the signed URL as iFlytek does:
# `host` must be the Host header, `date` within five minutes of now (403 otherwise), and
# `authorization` must decode to `api_key="...", algorithm="hmac-sha256", headers="host date
# request-line", signature="..."` whose HMAC-SHA256 over `host: ...\ndate: ...\nGET {path}
# HTTP/1.1` (keyed with the APISecret) it recomputes (401 otherwise). Then it reads one request
# frame and checks it strictly: the app_id, the domain of the path, parameter ranges, message
# roles and non-empty content, functions only on domains that have them. Refusals are one
# frame `{"header": {"code", "message", "sid", "status": 2}}` and a close; answers are frames
# with status 0, 1, ... 2, the last carrying `payload.usage.text`.

__all__ = ["PATH_DOMAINS", "SCENARIOS", "FakeXunfei", "RecordedConnection"]

PATH_DOMAINS = {
    "/v1.1/chat": "lite",
    "/v2.1/chat": "generalv2",
    "/v3.1/chat": "generalv3",
    "/v3.5/chat": "generalv3.5",
    "/v4.0/chat": "4.0Ultra",
    "/chat/pro-128k": "pro-128k",
    "/chat/max-32k": "max-32k",
}
FUNCTION_DOMAINS = frozenset({"generalv3", "generalv3.5", "max-32k", "4.0Ultra"})
CHAT_FIELDS = frozenset(
    {
        "domain",
        "temperature",
        "max_tokens",
        "top_k",
        "auditing",
        "chat_id",
        "presence_penalty",
        "frequency_penalty",
    }
)
SCENARIOS = frozenset(
    {"ok", "function_call", "rate_limited", "content_filter_mid", "drop_mid", "input_refused"}
)
AUTHORIZATION = re.compile(
    r'^api_key="(?P<api_key>[^"]*)", algorithm="(?P<algorithm>[^"]*)", '
    r'headers="(?P<headers>[^"]*)", signature="(?P<signature>[^"]*)"$'
)


class SparkError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> SparkError:
    return SparkError(10163, f"request parameter error: {message}")


@dataclass
class RecordedConnection:
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    frame: dict[str, Any] | None = None
    refused: int | None = None  # the HTTP status of a refused handshake
    answer: list[dict[str, Any]] = field(default_factory=list)


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def signature_for(api_secret: str, host: str, date: str, path: str) -> str:
    signed = f"host: {host}\ndate: {date}\nGET {path} HTTP/1.1"
    digest = hmac.new(api_secret.encode(), signed.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def validate(frame: Any, app_id: str, domain: str) -> None:
    if not isinstance(frame, dict) or set(frame) - {"header", "parameter", "payload"}:
        raise invalid("the frame has header, parameter and payload only")
    header = frame.get("header") or {}
    if set(header) - {"app_id", "uid"}:
        raise invalid("unknown header field")
    if header.get("app_id") != app_id:
        raise SparkError(10313, "appid cannot match apikey")
    uid = header.get("uid")
    if uid is not None and (not isinstance(uid, str) or len(uid) > 32):
        raise invalid("header.uid is at most 32 characters")
    chat = (frame.get("parameter") or {}).get("chat")
    if not isinstance(chat, dict) or set(chat) - CHAT_FIELDS:
        raise invalid("parameter.chat has unknown fields")
    if chat.get("domain") != domain:
        raise invalid(f"domain {chat.get('domain')!r} does not match this URL")
    temperature = chat.get("temperature", 0.5)
    if not isinstance(temperature, int | float) or not 0 < temperature <= 1:
        raise invalid("temperature must be in (0, 1]")
    top_k = chat.get("top_k", 4)
    if not isinstance(top_k, int) or not 1 <= top_k <= 6:
        raise invalid("top_k must be in [1, 6]")
    limit = 4096 if domain in ("lite", "generalv2", "pro-128k") else 8192
    max_tokens = chat.get("max_tokens", 1)
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= limit:
        raise invalid(f"max_tokens must be in [1, {limit}]")
    payload = frame.get("payload") or {}
    if set(payload) - {"message", "functions"}:
        raise invalid("payload has unknown fields")
    texts = (payload.get("message") or {}).get("text")
    if not isinstance(texts, list) or not texts:
        raise invalid("payload.message.text must not be empty")
    for i, message in enumerate(texts):
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise invalid(f"text[{i}] has role and content only")
        if message["role"] not in ("system", "user", "assistant"):
            raise invalid(f"text[{i}].role must be system, user or assistant")
        if message["role"] == "system" and i != 0:
            raise invalid("the system message must be the first")
        if not isinstance(message["content"], str) or not message["content"]:
            raise invalid(f"text[{i}].content must not be empty")
    if texts[-1]["role"] != "user":
        raise invalid("the last message must be the user's")
    if "functions" in payload:
        if domain not in FUNCTION_DOMAINS:
            raise invalid(f"functions are not supported by {domain}")
        for function in (payload["functions"] or {}).get("text") or ():
            if not function.get("name") or not isinstance(function.get("parameters"), dict):
                raise invalid("functions.text[] needs a name and parameters")


class FakeXunfei(FakeServer[RecordedConnection]):
    """Records a RecordedConnection per WebSocket handshake, as `connections` (or
    `requests`)."""

    scenarios = SCENARIOS
    thread_name = "fake-xunfei"

    def __init__(
        self,
        app_id: str = "fakeapp",
        api_key: str = "fakeapikey",
        api_secret: str = "fakeapisecret",
        reply: str = "Hello from fake Spark.",
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.app_id = app_id
        self.api_key = api_key
        self.api_secret = api_secret
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.function_args = '{"location": "Paris"}'
        self.max_clock_skew = 300

    # ------------------------------------------------------------------ public API

    @property
    def base_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """The channel key One API takes: APPID|APISecret|APIKey."""
        return f"{self.app_id}|{self.api_secret}|{self.api_key}"

    @property
    def connections(self) -> list[RecordedConnection]:
        return self.requests

    @property
    def last_connection(self) -> RecordedConnection:
        with self._lock:
            if not self._requests:
                raise LookupError("FakeXunfei has had no connection")
            return self._requests[-1]

    # ------------------------------------------------------------------ handshake

    def _add_routes(self, app: web.Application) -> None:
        for path in PATH_DOMAINS:
            app.router.add_get(path, self._handle)

    def _refuse(self, recorded: RecordedConnection, status: int, message: str) -> web.Response:
        recorded.refused = status
        return web.json_response({"message": message}, status=status)

    def _check_url(self, request: web.Request, recorded: RecordedConnection) -> web.Response | None:
        query = recorded.query
        if not {"authorization", "date", "host"} <= set(query):
            return self._refuse(recorded, 401, "Unauthorized")
        if query["host"] != request.host:
            return self._refuse(recorded, 401, "HMAC signature cannot be verified")
        try:
            signed_at = parsedate_to_datetime(query["date"]).timestamp()
        except (TypeError, ValueError):
            signed_at = 0.0
        if abs(time.time() - signed_at) > self.max_clock_skew:
            return self._refuse(
                recorded,
                403,
                "HMAC signature cannot be verified, a valid date or x-date header is required "
                "for HMAC Authentication",
            )
        try:
            decoded = base64.b64decode(query["authorization"], validate=True).decode()
        except ValueError:
            return self._refuse(recorded, 401, "HMAC signature cannot be verified")
        match = AUTHORIZATION.match(decoded)
        if match is None or match["api_key"] != self.api_key:
            return self._refuse(recorded, 401, "HMAC signature cannot be verified")
        if match["algorithm"] != "hmac-sha256" or match["headers"] != "host date request-line":
            return self._refuse(recorded, 401, "HMAC signature cannot be verified")
        expected = signature_for(self.api_secret, query["host"], query["date"], request.path)
        if not hmac.compare_digest(expected, match["signature"]):
            return self._refuse(recorded, 401, "HMAC signature does not match")
        return None

    # ------------------------------------------------------------------ exchange

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = self._remember(
            RecordedConnection(request.path, dict(request.query), lower_headers(request))
        )
        scenario = self._next_scenario()
        refused = self._check_url(request, recorded)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = f"cht000{uuid.uuid4().hex[:12]}@dx"
        try:
            message = await ws.receive(timeout=10)
            if message.type is not WSMsgType.TEXT:
                raise invalid("the request frame must be text")
            frame = None
            with contextlib.suppress(ValueError):
                frame = json.loads(message.data)
            recorded.frame = frame if isinstance(frame, dict) else None
            validate(frame, self.app_id, PATH_DOMAINS[request.path])
            if scenario == "rate_limited":
                raise SparkError(11202, "licc limit: the QPS of this appid exceeds its limit")
            if scenario == "input_refused":
                raise SparkError(10013, "input content audit failed")
            assert recorded.frame is not None
            await self._answer(ws, recorded, scenario, sid)
        except SparkError as error:
            header = {"code": error.code, "message": error.message, "sid": sid, "status": 2}
            refusal = {"header": header}
            recorded.answer.append(refusal)
            await ws.send_str(json.dumps(refusal))
        except (TimeoutError, asyncio.CancelledError):
            pass
        await ws.close()
        return ws

    def _wants_function(self, frame: dict[str, Any]) -> str | None:
        functions = ((frame["payload"].get("functions") or {}).get("text")) or []
        return str(functions[0]["name"]) if functions else None

    def _frame(self, sid: str, status: int, seq: int, text: list[dict[str, Any]]) -> dict:
        frame: dict[str, Any] = {
            "header": {"code": 0, "message": "Success", "sid": sid, "status": status},
            "payload": {"choices": {"status": status, "seq": seq, "text": text}},
        }
        if status == 2:
            frame["payload"]["usage"] = {
                "text": {
                    "question_tokens": 4,
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": self.completion_tokens,
                    "total_tokens": self.prompt_tokens + self.completion_tokens,
                }
            }
        return frame

    async def _answer(
        self, ws: web.WebSocketResponse, recorded: RecordedConnection, scenario: str, sid: str
    ) -> None:
        assert recorded.frame is not None
        function = self._wants_function(recorded.frame)
        if scenario == "function_call" and function is not None:
            call = {"arguments": self.function_args, "name": function}
            item = {"content": "", "role": "assistant", "function_call": call, "index": 0}
            frames = [self._frame(sid, 2, 0, [item])]
        else:
            pieces = _split(self.reply)
            frames = [
                self._frame(
                    sid,
                    0 if i == 0 else 2 if i == len(pieces) - 1 else 1,
                    i,
                    [{"content": piece, "role": "assistant", "index": 0}],
                )
                for i, piece in enumerate(pieces)
            ]
        for i, frame in enumerate(frames):
            if i == 1 and scenario == "content_filter_mid":
                refusal = {"code": 10014, "message": "output content audit failed"}
                frame = {"header": {**refusal, "sid": sid, "status": 2}}
            if i == 1 and scenario == "drop_mid":
                return
            recorded.answer.append(frame)
            await ws.send_str(json.dumps(frame, ensure_ascii=False))
            if frame["header"]["code"]:
                return
