"""iFlytek Xunfei Spark (channel type 18) over its v1 WebSocket API.

Spark is not one HTTP exchange: the client opens `wss://spark-api.xf-yun.com/{version}/chat`
with an HMAC-SHA256-signed query (`authorization`, `date`, `host`), sends one request frame
and reads answer frames until the one with `status: 2`. `build_request` makes the signed URL
and the request frame; `send` runs the exchange and hands the relay an `httpx.Response` whose
body it produces itself: the answer frames as `data:` lines for a stream (the translator turns
them into OpenAI chunks), or `{"frames": [...]}` for a normal answer (`translate_response`
merges them). The channel key is `APPID|APISecret|APIKey`; the Spark version comes from the
model name (`Spark-Max`, `SparkDesk-v3.5`), else the channel's `api_version`, else v1.1.

Spark's history has only system, user and assistant turns: a tool result is sent as a user
turn, and an assistant turn that only called a function as the call in JSON.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import httpx
import orjson
from django.conf import settings

from channels_mgmt.selection import ChannelInfo
from oneapi import proxies
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure, failure_from_exception
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME

DEFAULT_ORIGIN = "wss://spark-api.xf-yun.com"
DEFAULT_VERSION = "v1.1"
# The catalog's model names (One API's) and the API versions serving them.
MODEL_VERSIONS = {
    "Spark-Lite": "v1.1",
    "Spark-Pro": "v3.1",
    "Spark-Pro-128K": "v3.1-128K",
    "Spark-Max": "v3.5",
    "Spark-Max-32K": "v3.5-32K",
    "Spark-4.0-Ultra": "v4.0",
}
VERSION_DOMAINS = {
    "v1.1": "lite",
    "v2.1": "generalv2",
    "v3.1": "generalv3",
    "v3.1-128K": "pro-128k",
    "v3.5": "generalv3.5",
    "v3.5-32K": "max-32k",
    "v4.0": "4.0Ultra",
}
VERSION_PATHS = {"v3.1-128K": "/chat/pro-128k", "v3.5-32K": "/chat/max-32k"}
# Domains with function calling (`payload.functions`).
FUNCTION_DOMAINS = frozenset({"generalv3", "generalv3.5", "max-32k", "4.0Ultra"})
# max_tokens limits: [1, 4096] on these, [1, 8192] elsewhere.
SHORT_OUTPUT_DOMAINS = frozenset({"lite", "generalv2", "pro-128k"})
MIN_TEMPERATURE = 0.01  # Spark takes temperature in (0, 1]
MAX_UID_LENGTH = 32
# Moderation refusals: an answer cut short is finished as content_filter.
CONTENT_FILTER_CODES = frozenset({10013, 10014, 10019})
ERROR_STATUSES = {
    10013: 400,
    10014: 400,
    10019: 400,
    10160: 400,
    10161: 400,
    10163: 400,
    10907: 400,
    11200: 403,
    11201: 429,
    11202: 429,
    11203: 429,
    10110: 503,
}
CONNECT_TIMEOUT_SECONDS = 10.0
# Without RELAY_TIMEOUT a silent socket would hang the request forever: bound each wait.
IDLE_TIMEOUT_SECONDS = 120.0
SYSTEM_ROLES = frozenset({"system", "developer"})

Json = dict[str, Any]


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


# ---------------------------------------------------------------------- key, version, URL


@dataclass(frozen=True)
class SparkKey:
    app_id: str
    api_secret: str
    api_key: str


def parse_key(key: str) -> SparkKey:
    parts = [part.strip() for part in key.split("|")]
    if len(parts) != 3 or not all(parts):
        raise UpstreamFailure(
            RelayError(
                500,
                "invalid Xunfei channel key: expected APPID|APISecret|APIKey",
                code="invalid_channel_key",
            ),
            retryable=True,
            from_upstream=False,
        )
    return SparkKey(*parts)


def spark_version(model: str, config: dict[str, object]) -> str:
    if model in MODEL_VERSIONS:
        return MODEL_VERSIONS[model]
    _, dash, suffix = model.partition("-")
    if dash and suffix.startswith("v"):  # SparkDesk-v3.5, SparkDesk-v3.1-128K
        return suffix
    configured = config.get("api_version")
    return configured if isinstance(configured, str) and configured else DEFAULT_VERSION


def spark_domain(version: str) -> str:
    return VERSION_DOMAINS.get(version, "general" + version.removeprefix("v"))


def spark_url(origin: str, version: str) -> str:
    origin = origin.rstrip("/")
    if origin.startswith("http"):  # a base URL given as https:// means the same host
        origin = "ws" + origin.removeprefix("http")
    return origin + VERSION_PATHS.get(version, f"/{version}/chat")


def rfc1123(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def auth_url(url: str, api_key: str, api_secret: str, now: datetime | None = None) -> str:
    """The signed WebSocket URL: HMAC-SHA256 over the host, the date and the request line,
    keyed with the APISecret, as iFlytek's authentication document describes."""
    parts = urlsplit(url)
    date = rfc1123(now or datetime.now(UTC))
    signed = f"host: {parts.netloc}\ndate: {date}\nGET {parts.path} HTTP/1.1"
    digest = hmac.new(api_secret.encode(), signed.encode(), hashlib.sha256).digest()
    signature = base64.b64encode(digest).decode()
    origin = (
        f'api_key="{api_key}", algorithm="hmac-sha256", '
        f'headers="host date request-line", signature="{signature}"'
    )
    authorization = base64.b64encode(origin.encode()).decode()
    query = urlencode({"authorization": authorization, "date": date, "host": parts.netloc})
    return f"{url}?{query}"


# ---------------------------------------------------------------------- request frame


def text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text") or ""))
        elif isinstance(part, dict):
            raise RelayError(
                400,
                f"content part type {part.get('type')!r} is not supported by channel type Xunfei",
                code="unsupported_content",
            )
    return "\n".join(t for t in texts if t)


def call_text(message: dict[str, Any]) -> str:
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append(
                {"name": function.get("name"), "arguments": function.get("arguments") or "{}"}
            )
    return orjson.dumps({"function_call": calls[0] if len(calls) == 1 else calls}).decode()


def convert_messages(messages: list[Any]) -> list[Json]:
    converted: list[Json] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        text = text_of(message.get("content"))
        if role in SYSTEM_ROLES:
            role = "system"
        elif role == "tool":
            role = "user"
        elif role == "assistant" and not text and message.get("tool_calls"):
            text = call_text(message)
        elif role != "assistant":
            role = "user"
        if text:  # Spark refuses empty content
            converted.append({"role": role, "content": text})
    return converted


def convert_functions(payload: dict[str, Any]) -> list[Json]:
    tools = payload.get("tools")
    if not tools and isinstance(payload.get("functions"), list):
        tools = [{"type": "function", "function": f} for f in payload["functions"]]
    functions = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            functions.append(
                {
                    "name": function["name"],
                    "description": function.get("description") or "",
                    "parameters": function.get("parameters")
                    or {"type": "object", "properties": {}},
                }
            )
    return functions


def chat_parameters(payload: dict[str, Any], domain: str) -> Json:
    chat: Json = {"domain": domain}
    temperature = payload.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        chat["temperature"] = min(max(float(temperature), MIN_TEMPERATURE), 1.0)
    limit = 4096 if domain in SHORT_OUTPUT_DOMAINS else 8192
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        chat["max_tokens"] = min(max_tokens, limit)
    top_k = payload.get("top_k")
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        chat["top_k"] = min(max(top_k, 1), 6)
    return chat


def convert_request(payload: dict[str, Any], app_id: str, domain: str) -> Json:
    """An OpenAI chat request as Spark's request frame."""
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise unsupported("n > 1 is not supported by channel type Xunfei")
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    header: Json = {"app_id": app_id}
    user = payload.get("user")
    if isinstance(user, str) and user:
        header["uid"] = user[:MAX_UID_LENGTH]
    frame: Json = {
        "header": header,
        "parameter": {"chat": chat_parameters(payload, domain)},
        "payload": {"message": {"text": convert_messages(messages)}},
    }
    functions = convert_functions(payload)
    if functions and payload.get("tool_choice") != "none":
        if domain not in FUNCTION_DOMAINS:
            raise unsupported(f"function calling is not supported by Spark domain {domain}")
        frame["payload"]["functions"] = {"text": functions}
    return frame


def spark_call(channel: ChannelInfo, payload: dict[str, Any], model: str) -> tuple[str, Json]:
    """(signed URL, request frame) of one chat request on a Spark channel."""
    key = parse_key(channel.key)
    version = spark_version(model, channel.config)
    url = spark_url(channel.base_url or DEFAULT_ORIGIN, version)
    frame = convert_request(payload, key.app_id, spark_domain(version))
    return auth_url(url, key.api_key, key.api_secret), frame


# ---------------------------------------------------------------------- answer frames


def header_of(frame: Json) -> Json:
    return frame.get("header") if isinstance(frame.get("header"), dict) else {}


def choices_of(frame: Json) -> Json:
    payload = frame.get("payload") if isinstance(frame.get("payload"), dict) else {}
    return payload.get("choices") if isinstance(payload.get("choices"), dict) else {}


def is_last(frame: Json) -> bool:
    return (
        header_of(frame).get("status") == 2
        or choices_of(frame).get("status") == 2
        or error_code(frame) != 0
    )


def error_code(frame: Json) -> int:
    code = header_of(frame).get("code")
    return code if isinstance(code, int) else 0


def frame_failure(frame: Json) -> UpstreamFailure:
    header = header_of(frame)
    code = error_code(frame)
    status = ERROR_STATUSES.get(code, 500)
    message = str(header.get("message") or f"Spark error {code}")
    return UpstreamFailure(
        RelayError(status, message, type=UPSTREAM_ERROR, code=code), retryable=status != 400
    )


def frame_texts(frame: Json) -> list[Json]:
    return [item for item in choices_of(frame).get("text") or () if isinstance(item, dict)]


def frame_usage(frame: Json) -> Json | None:
    payload = frame.get("payload") if isinstance(frame.get("payload"), dict) else {}
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    text = usage.get("text") if isinstance(usage.get("text"), dict) else None
    if text is None:
        return None
    prompt, completion = text.get("prompt_tokens"), text.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = text.get("total_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


def tool_call(function_call: Json, sid: str) -> Json:
    arguments = function_call.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments or {}).decode()
    return {
        "id": f"call_{sid or time.time_ns()}",
        "type": "function",
        "function": {"name": str(function_call.get("name") or ""), "arguments": arguments},
    }


def completion_id(sid: Any) -> str:
    return f"chatcmpl-{sid}" if sid else f"chatcmpl-{time.time_ns()}"


def convert_frames(frames: list[Json], model: str) -> Json:
    """A whole Spark answer (its frames in order) as an OpenAI chat.completion. A moderation
    refusal after some text finishes it as content_filter; any other error fails it."""
    texts: list[str] = []
    calls: list[Json] = []
    usage = None
    finish = "stop"
    sid = ""
    for frame in frames:
        sid = sid or str(header_of(frame).get("sid") or "")
        code = error_code(frame)
        if code:
            if code in CONTENT_FILTER_CODES and (texts or calls):
                finish = "content_filter"
                break
            raise frame_failure(frame)
        for item in frame_texts(frame):
            texts.append(str(item.get("content") or ""))
            if isinstance(item.get("function_call"), dict):
                calls.append(tool_call(item["function_call"], sid))
        usage = frame_usage(frame) or usage
    text = "".join(texts)
    message: Json = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
        finish = "tool_calls" if finish == "stop" else finish
    result: Json = {
        "id": completion_id(sid),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        result["usage"] = usage
    return result


def sse(event: Json) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class XunfeiStream:
    """Spark answer frames (`data:` lines written by `send`) in, OpenAI chunks out."""

    client_wants_usage: bool
    model: str
    usage: Json | None = None
    saw_done: bool = False
    upstream_error: Json | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    started: bool = False
    called: bool = False

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:"):
            return None
        try:
            frame = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(frame, dict) or self.saw_done:
            return None
        sid = str(header_of(frame).get("sid") or "")
        if not self.id:
            self.id = completion_id(sid)
        code = error_code(frame)
        if code in CONTENT_FILTER_CODES and self.started:
            return self._finish({}, "content_filter")
        if code:
            return self._error(frame)
        self.usage = frame_usage(frame) or self.usage
        delta: Json = {}
        for item in frame_texts(frame):
            content = item.get("content")
            if isinstance(content, str) and content:
                delta["content"] = delta.get("content", "") + content
                self.generated.append(content)
            if isinstance(item.get("function_call"), dict):
                call = tool_call(item["function_call"], sid)
                self.generated += [call["function"]["name"], call["function"]["arguments"]]
                delta["tool_calls"] = [{"index": 0, **call}]
                self.called = True
        if is_last(frame):
            return self._finish(delta, "tool_calls" if self.called else "stop")
        return self._chunk(delta, None) if delta else None

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _envelope(self, choices: list[Json]) -> Json:
        return {
            "id": self.id or completion_id(None),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _chunk(self, delta: Json, finish: str | None) -> bytes:
        if not self.started:
            delta = {"role": "assistant", "content": "", **delta}
            self.started = True
        entry = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(self._envelope([entry]))

    def _finish(self, delta: Json, finish: str) -> bytes:
        frames = self._chunk(delta, finish)
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        self.saw_done = True
        return frames + DONE_FRAME

    def _error(self, frame: Json) -> bytes:
        header = header_of(frame)
        self.upstream_error = {
            "message": str(header.get("message") or "upstream stream error"),
            "type": UPSTREAM_ERROR,
            "param": None,
            "code": error_code(frame),
        }
        return sse({"error": self.upstream_error})


# ---------------------------------------------------------------------- the exchange


class SparkClosed(Exception):
    """The socket ended before the frame with status 2."""


class SparkSocket:
    """One WebSocket exchange: open, send the request frame, read frames to the last."""

    def __init__(self, url: str, frame: bytes) -> None:
        self.url = url
        self.frame = frame
        self.done = False
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        total = settings.RELAY_TIMEOUT or None
        self.deadline = time.monotonic() + total if total else None

    async def open(self) -> None:
        """Connect and send the request; a refused handshake or a dead host is a failure."""
        self.session = aiohttp.ClientSession(
            connector=proxies.aiohttp_connector(settings.RELAY_PROXY),
            timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_SECONDS),
            trust_env=False,
        )
        try:
            self.ws = await self.session.ws_connect(
                self.url, proxy=proxies.aiohttp_request_proxy(settings.RELAY_PROXY), autoping=True
            )
            await self.ws.send_str(self.frame.decode())
        except aiohttp.WSServerHandshakeError as error:
            await self.close()
            status = error.status if error.status >= 400 else 502
            raise UpstreamFailure(
                RelayError(
                    status,
                    f"Xunfei refused the WebSocket handshake (HTTP {error.status}): check the "
                    "channel key APPID|APISecret|APIKey and this server's clock",
                    type=UPSTREAM_ERROR,
                    code="bad_response_status_code",
                ),
                retryable=status != 400,
            ) from None
        except (aiohttp.ClientError, TimeoutError) as error:
            await self.close()
            failure = failure_from_exception(httpx.ConnectError(str(error) or "connect failed"))
            raise failure from error

    async def receive(self) -> Json | None:
        """The next answer frame; None after the last one."""
        if self.done or self.ws is None:
            return None
        wait = IDLE_TIMEOUT_SECONDS
        if self.deadline is not None:
            wait = min(wait, max(self.deadline - time.monotonic(), 0.0))
        message = await self.ws.receive(timeout=wait)
        if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            try:
                frame = orjson.loads(message.data)
            except orjson.JSONDecodeError:
                raise SparkClosed("Spark sent a frame that is not JSON") from None
            if not isinstance(frame, dict):
                raise SparkClosed("Spark sent a frame that is not a JSON object")
            self.done = is_last(frame)
            return frame
        if message.type is aiohttp.WSMsgType.ERROR:
            raise SparkClosed(f"Spark connection failed: {self.ws.exception()}")
        raise SparkClosed("Spark closed the connection before the answer was complete")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self.session is not None:
            await self.session.close()
        self.ws = self.session = None


async def read_frame(socket: SparkSocket) -> Json | None:
    """`socket.receive` with its failures in httpx's terms, which the relay understands."""
    try:
        return await socket.receive()
    except TimeoutError as error:
        raise httpx.ReadTimeout("Spark sent nothing in time") from error
    except (SparkClosed, aiohttp.ClientError) as error:
        raise httpx.ReadError(str(error)) from error


async def run_spark(
    channel: ChannelInfo, payload: dict[str, Any], model: str | None = None
) -> AsyncIterator[Json]:
    """The answer frames of one chat request (OpenAI format) on a Spark channel."""
    url, frame = spark_call(channel, payload, model or str(payload.get("model") or ""))
    socket = SparkSocket(url, orjson.dumps(frame))
    await socket.open()
    try:
        while (answer := await read_frame(socket)) is not None:
            yield answer
    finally:
        await socket.close()


class SparkBody(httpx.AsyncByteStream):
    """A streamed response body made of the socket's frames, one `data:` line each."""

    def __init__(self, first: Json, socket: SparkSocket) -> None:
        self.first = first
        self.socket = socket

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield sse(self.first)
        while (frame := await read_frame(self.socket)) is not None:
            yield sse(frame)

    async def aclose(self) -> None:
        await self.socket.close()


# ---------------------------------------------------------------------- adaptor


class XunfeiAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is not RelayMode.CHAT:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Xunfei"
            )
        url, frame = spark_call(attempt.channel, body.payload, attempt.model)
        return UpstreamRequest("GET", url, {}, orjson.dumps(frame))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Xunfei")

    async def send(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        """Run the exchange up to the first frame, so that a refusal (bad key, rate limit,
        invalid request) fails this attempt and the relay may try another channel."""
        socket = SparkSocket(call.url, call.content)
        await socket.open()
        request = httpx.Request("GET", call.url.split("?", 1)[0])
        try:
            first = await read_frame(socket)
            if first is None:
                raise httpx.ReadError("Spark closed the connection without answering")
            if error_code(first):
                raise frame_failure(first)
            if attempt.stream:
                return httpx.Response(
                    200,
                    headers={"content-type": "text/event-stream"},
                    stream=SparkBody(first, socket),
                    request=request,
                )
            frames = [first]
            while (frame := await read_frame(socket)) is not None:
                frames.append(frame)
        except httpx.HTTPError as error:
            await socket.close()
            raise failure_from_exception(error) from error
        except BaseException:
            await socket.close()
            raise
        await socket.close()
        return httpx.Response(
            200,
            headers={"content-type": "application/json"},
            content=orjson.dumps({"frames": frames}),
            request=request,
        )

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        frames = data.get("frames") if isinstance(data, dict) else None
        if not isinstance(frames, list):
            return body
        return orjson.dumps(
            convert_frames([f for f in frames if isinstance(f, dict)], attempt.model)
        )

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return XunfeiStream(client_wants_usage=client_wants_usage, model=attempt.model)
