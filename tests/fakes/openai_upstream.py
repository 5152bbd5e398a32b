from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import hashlib
import json
import re
import secrets
import string
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.server import FakeServer, ServerStopping

# A fake OpenAI upstream: a real HTTP server speaking OpenAI's wire protocol.
#
# The gateway under test talks to it over real sockets, so everything the gateway
# does with bytes (header parsing, SSE framing, connection errors, timeouts) is
# exercised exactly as it would be against api.openai.com.
#
#     with FakeOpenAI(api_key="sk-upstream") as fake:
#         fake.scenario = "error_429"
#         ...  # point the gateway at fake.base_url
#         assert fake.requests[-1].json["model"] == "gpt-4o-mini"
#
# The server runs an aiohttp application on its own event loop in a daemon thread,
# so it works from plain synchronous tests and from async tests alike (it never
# shares the test's loop).

__all__ = [
    "ERROR_SCENARIOS",
    "SCENARIOS",
    "TINY_PNG",
    "FakeOpenAI",
    "RecordedRequest",
    "embedding_vector",
    "split_text",
]

# A valid 1x1 transparent PNG, so clients that decode b64_json get a real image.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

# An ID3v2 header followed by MPEG-1 Layer III frame headers: enough for sniffers
# to call it MP3 while staying tiny and deterministic.
DEFAULT_SPEECH_AUDIO = b"ID3\x04\x00\x00\x00\x00\x00\x00" + (b"\xff\xfb\x90\x64" + b"\x00" * 60) * 8

DEFAULT_MODELS = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-3.5-turbo",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "omni-moderation-latest",
    "dall-e-3",
    "tts-1",
    "whisper-1",
]

# Scenarios that answer with an HTTP error before any route logic runs.
ERROR_SCENARIOS = frozenset(
    {
        "error_400",
        "error_401",
        "error_403",
        "error_404",
        "error_429",
        "error_500",
        "error_502_html",
        "error_503",
        "insufficient_quota",
    }
)

SCENARIOS = ERROR_SCENARIOS | {
    "ok",
    "tool_call",
    "reasoning",
    "no_usage",
    "no_done",
    "slow_stream",
    "timeout",
    "reset",
    "drop_mid_stream",
    "error_mid_stream",
}

# Content types OpenAI uses for /audio/speech, keyed by the request's response_format.
SPEECH_CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}

MODERATION_CATEGORIES = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
]

# Verbatim texts from api.openai.com, so gateway code that matches on them is tested for real.
MSG_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
    "field (with blank username) if you're accessing the API from your browser and are "
    "prompted for a username. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
MSG_BAD_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
    "contact us through our help center at help.openai.com.)"
)
MSG_SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
MSG_QUOTA = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
    "</body>\r\n</html>\r\n"
)

_ID_ALPHABET = string.ascii_letters + string.digits
# Where the fake serves the images whose URLs it hands out (outside /v1 and auth, like
# the pre-signed blob URLs OpenAI returns).
_IMAGE_FILES_PREFIX = "/fake-files/"

Handler = Callable[[web.Request, "RecordedRequest", str], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it, captured before any scenario is applied."""

    method: str
    path: str
    query: dict[str, str]
    # Lower-case names; repeated headers are joined with ", " as HTTP allows.
    headers: dict[str, str]
    body: bytes
    # The parsed body when it is a JSON object, else None.
    json: dict[str, Any] | None = None
    # Non-file fields of multipart or urlencoded bodies; a repeated field becomes a list.
    form: dict[str, str | list[str]] | None = None
    # Multipart file fields: name -> (filename, content).
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)


def split_text(text: str) -> list[str]:
    """Split text into word-sized pieces that concatenate back to it exactly.

    Pieces carry their leading whitespace (" from") the way tokenizer-driven
    streams do, which also makes accidental trimming in the gateway visible.
    """
    return [piece for piece in re.split(r"(?<=\S)(?=\s)", text) if piece]


def embedding_vector(item: Any, dimensions: int) -> list[float]:
    """The deterministic unit-length vector the fake returns for one embeddings input.

    Values go through float32 so the "float" and "base64" encodings decode to
    identical numbers, as they do with OpenAI.
    """
    seed = json.dumps(item, ensure_ascii=False, sort_keys=True).encode()
    raw = hashlib.shake_256(seed).digest(4 * dimensions)
    ints = struct.unpack(f"<{dimensions}I", raw)
    values = [i / 0xFFFFFFFF * 2.0 - 1.0 for i in ints]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    normalised = [v / norm for v in values]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *normalised)))


def _rand_id(prefix: str, length: int = 29) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _mask_key(key: str) -> str:
    # OpenAI echoes a wrong key as its first 8 and last 4 characters around stars.
    if len(key) <= 12:
        return key
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


def _error_body(
    message: str, type_: str, code: str | None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _sse(data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\n\n".encode()


def _abort(request: web.Request) -> None:
    # abort() drops the socket without flushing or finishing the chunked body, which is
    # what a crashed upstream or a middlebox reset looks like to the client.
    if request.transport is not None:
        request.transport.abort()


def _parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse multipart/form-data from bytes already read.

    aiohttp's own multipart reader needs the unread request stream, but the raw
    body has to be recorded first, so the stdlib MIME parser does the work.
    """
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    form: dict[str, Any] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not message.is_multipart():
        return form, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        content = part.get_payload(decode=True)
        if not isinstance(content, bytes):
            content = b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, content)
            continue
        value = content.decode("utf-8", errors="replace")
        if name in form:
            previous = form[name]
            form[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            form[name] = value
    return form, files


def _form_value(form: dict[str, Any] | None, key: str) -> str | None:
    value = (form or {}).get(key)
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _form_values(form: dict[str, Any] | None, key: str) -> list[str]:
    value = (form or {}).get(key)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


class FakeOpenAI(FakeServer[RecordedRequest]):
    """A local OpenAI-compatible upstream with switchable failure scenarios.

    Every public attribute may be changed from the test thread at any time; the
    server reads it when the next request arrives.
    """

    scenarios = SCENARIOS
    thread_name = "fake-openai"
    # Audio and image uploads exceed aiohttp's 1 MiB default; OpenAI accepts 25 MB.
    client_max_size = 64 * 1024 * 1024
    # When a client gives up (timeout tests), its handler is cancelled instead of sleeping on.
    handler_cancellation = True

    def __init__(
        self,
        api_key: str | None = None,
        reply: str = "Hello from fake upstream.",
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.api_key = api_key
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens

        # Content knobs.
        self.reasoning = "Let me think about this step by step."
        self.reasoning_tokens = 0
        self.tool_arguments = '{"location": "Paris", "unit": "celsius"}'
        self.embedding_dimensions = 16
        self.moderation_flagged = False
        self.transcript = reply
        self.audio_duration = 2.5
        self.speech_audio = DEFAULT_SPEECH_AUDIO
        self.image_bytes = TINY_PNG
        self.models: list[str] = list(DEFAULT_MODELS)
        self.system_fingerprint = "fp_fake0001"

        # Timing knobs, in seconds.
        self.chunk_delay = 0.2
        self.hang_seconds = 30.0
        self.retry_after = 1

        # Legacy billing endpoints (what One API polls for channel balances).
        self.has_payment_method = True
        self.soft_limit_usd = 100.0
        self.hard_limit_usd = 120.0
        self.system_hard_limit_usd = 120.0
        self.access_until = 0
        self.total_usage = 0.0  # in cents of a dollar, as OpenAI reported it

        self._routes: dict[tuple[str, str], Handler] = {
            ("POST", "/chat/completions"): self._chat_completions,
            ("POST", "/completions"): self._completions,
            ("POST", "/embeddings"): self._embeddings,
            ("POST", "/moderations"): self._moderations,
            ("POST", "/edits"): self._edits,
            ("POST", "/images/generations"): self._images,
            ("POST", "/images/edits"): self._images,
            ("POST", "/images/variations"): self._images,
            ("POST", "/audio/speech"): self._speech,
            ("POST", "/audio/transcriptions"): self._transcription,
            ("POST", "/audio/translations"): self._transcription,
            ("GET", "/models"): self._list_models,
            ("GET", "/dashboard/billing/subscription"): self._billing_subscription,
            ("GET", "/dashboard/billing/usage"): self._billing_usage,
        }

    # ------------------------------------------------------------------ request entry

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(_IMAGE_FILES_PREFIX):
            # Image downloads are not API calls: no auth, no recording, no scenarios.
            return web.Response(body=self.image_bytes, content_type="image/png")
        recorded = await self._receive(request)
        scenario = self._next_scenario()
        try:
            return await self._dispatch(request, recorded, scenario)
        except ServerStopping:
            _abort(request)
            return web.Response(status=503)

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        content_type = request.headers.get("Content-Type", "")
        parsed_json: dict[str, Any] | None = None
        form: dict[str, Any] | None = None
        files: dict[str, tuple[str, bytes]] = {}
        if content_type.startswith("multipart/form-data"):
            form, files = _parse_multipart(content_type, body)
        elif content_type.startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(body.decode("utf-8", errors="replace")))
        elif body:
            # Parse regardless of Content-Type: a gateway forgetting the header should
            # still be inspectable, and the route decides whether that is acceptable.
            with contextlib.suppress(ValueError):
                loaded = json.loads(body)
                if isinstance(loaded, dict):
                    parsed_json = loaded
        return RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=headers,
            body=body,
            json=parsed_json,
            form=form,
            files=files,
        )

    async def _dispatch(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if scenario == "reset":
            _abort(request)
            # Nothing reaches the client: the transport is gone. aiohttp needs a value.
            return web.Response(status=204)
        if scenario == "timeout":
            await self._sleep(self.hang_seconds)
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        if scenario in ERROR_SCENARIOS:
            return self._scenario_error(scenario, recorded)

        route = request.path.rstrip("/") or "/"
        if route.startswith("/v1/"):
            route = route[3:]
        handler = self._routes.get((request.method, route))
        if handler is not None:
            return await handler(request, recorded, scenario)
        if request.method == "GET" and route.startswith("/models/"):
            return self._retrieve_model(route.removeprefix("/models/"))
        return self._error(
            404, f"Invalid URL ({request.method} {request.path})", "invalid_request_error", None
        )

    # ------------------------------------------------------------------ responses

    def _headers(self, **extra: str) -> dict[str, str]:
        # Headers every OpenAI response carries; gateways log x-request-id and some
        # read the rate-limit headers even on success.
        return {
            "x-request-id": "req_" + secrets.token_hex(16),
            "openai-version": "2020-10-01",
            "openai-organization": "user-fake",
            "openai-processing-ms": "12",
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": "30000000",
            "x-ratelimit-remaining-tokens": "29999990",
            "x-ratelimit-reset-tokens": "0s",
            **extra,
        }

    def _json(self, data: Any, status: int = 200, **headers: str) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(data).encode(),
            headers=self._headers(**{"Content-Type": "application/json", **headers}),
        )

    def _error(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None,
        param: str | None = None,
        **headers: str,
    ) -> web.Response:
        # OpenAI adds the charset on error bodies only.
        return self._json(
            _error_body(message, type_, code, param),
            status,
            **{"Content-Type": "application/json; charset=utf-8", **headers},
        )

    def _invalid_key(self, authorization: str) -> web.Response:
        # The exact 401 bodies OpenAI sends for a missing and for a wrong key.
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return self._error(401, MSG_NO_KEY, "invalid_request_error", None)
        message = (
            f"Incorrect API key provided: {_mask_key(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        return self._error(401, message, "invalid_request_error", "invalid_api_key")

    def _check_auth(self, request: web.Request) -> web.Response | None:
        if not self.api_key:
            return None
        if request.headers.get("Authorization", "") == f"Bearer {self.api_key}":
            return None
        return self._invalid_key(request.headers.get("Authorization", ""))

    def _scenario_error(self, scenario: str, recorded: RecordedRequest) -> web.Response:
        model = (recorded.json or {}).get("model") or _form_value(recorded.form, "model")
        model = model or "gpt-4o-mini"
        if scenario == "error_400":
            return self._error(
                400,
                "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 130000 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
                param="messages",
            )
        if scenario == "error_401":
            return self._invalid_key(recorded.headers.get("authorization", ""))
        if scenario == "error_403":
            return self._error(
                403,
                "Country, region, or territory not supported",
                "request_forbidden",
                "unsupported_country_region_territory",
            )
        if scenario == "error_404":
            return self._error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            )
        if scenario == "error_429":
            retry = str(self.retry_after)
            return self._error(
                429,
                f"Rate limit reached for {model} in organization org-fake on requests per min "
                f"(RPM): Limit 3, Used 3, Requested 1. Please try again in {retry}s. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                "rate_limit_exceeded",
                **{
                    "Retry-After": retry,
                    "retry-after-ms": str(int(float(self.retry_after) * 1000)),
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": f"{retry}s",
                },
            )
        if scenario == "insufficient_quota":
            return self._error(429, MSG_QUOTA, "insufficient_quota", "insufficient_quota")
        if scenario == "error_500":
            return self._error(500, MSG_SERVER_ERROR, "server_error", None)
        if scenario == "error_502_html":
            # What Cloudflare sends when OpenAI's origin is down: HTML, not JSON.
            return web.Response(
                status=502,
                text=HTML_502,
                content_type="text/html",
                headers={"Server": "cloudflare"},
            )
        # error_503
        return self._error(
            503,
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        )

    def _json_body(
        self, recorded: RecordedRequest, *, require_model: bool = True
    ) -> dict[str, Any] | web.Response:
        if recorded.json is None:
            return self._error(400, MSG_BAD_JSON, "invalid_request_error", None)
        if require_model and not recorded.json.get("model"):
            return self._error(
                400, "you must provide a model parameter", "invalid_request_error", None
            )
        return recorded.json

    def _usage(self, scenario: str, *, detailed: bool) -> dict[str, Any] | None:
        if scenario == "no_usage":
            return None
        usage: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if detailed:
            usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
            usage["completion_tokens_details"] = {
                "reasoning_tokens": self.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            }
        return usage

    # ------------------------------------------------------------------ streaming

    async def _stream(
        self,
        request: web.Request,
        scenario: str,
        chunks: list[tuple[bool, dict[str, Any]]],
        usage_chunk: dict[str, Any] | None,
    ) -> web.StreamResponse:
        """Write SSE events one by one; `chunks` pairs each event with "is a content piece".

        drop_mid_stream / error_mid_stream cut the stream right after the second
        content piece (or the last one, if the reply is shorter).
        """
        piece_positions = [i for i, (is_piece, _) in enumerate(chunks) if is_piece]
        cut_at = piece_positions[min(2, len(piece_positions)) - 1] if piece_positions else 0
        response = web.StreamResponse(
            status=200,
            headers=self._headers(**{"Content-Type": "text/event-stream; charset=utf-8"}),
        )
        await response.prepare(request)
        sent = 0

        async def send(event: dict[str, Any] | str) -> None:
            nonlocal sent
            if sent and scenario == "slow_stream":
                await self._sleep(self.chunk_delay)
            # Each write goes straight to the socket, so clients see events as they arrive.
            await response.write(_sse(event))
            sent += 1

        for position, (_, chunk) in enumerate(chunks):
            await send(chunk)
            if position != cut_at:
                continue
            if scenario == "drop_mid_stream":
                _abort(request)
                return response
            if scenario == "error_mid_stream":
                await send(_error_body(MSG_SERVER_ERROR, "server_error", None))
                await response.write_eof()
                return response
        if usage_chunk is not None:
            await send(usage_chunk)
        if scenario != "no_done":
            await send("[DONE]")
        await response.write_eof()
        return response

    @staticmethod
    def _wants_usage(payload: dict[str, Any]) -> bool:
        options = payload.get("stream_options")
        return isinstance(options, dict) and options.get("include_usage") is True

    # ------------------------------------------------------------------ chat

    def _tool_name(self, payload: dict[str, Any]) -> str | None:
        tools = payload.get("tools")
        if not isinstance(tools, list) or not tools:
            return None
        choice = payload.get("tool_choice")
        if isinstance(choice, dict):
            name = (choice.get("function") or {}).get("name")
            if name:
                return str(name)
        for tool in tools:
            if isinstance(tool, dict) and isinstance(tool.get("function"), dict):
                return str(tool["function"].get("name", "tool"))
        return None

    async def _chat_completions(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        payload = self._json_body(recorded)
        if isinstance(payload, web.Response):
            return payload
        model = str(payload["model"])
        n = int(payload.get("n") or 1)
        tool_name = self._tool_name(payload) if scenario == "tool_call" else None
        completion_id = _rand_id("chatcmpl-")
        created = int(time.time())
        call_ids = [_rand_id("call_", 24) for _ in range(n)]

        if not payload.get("stream"):
            choices = []
            for index in range(n):
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": self.reply,
                    "refusal": None,
                    "annotations": [],
                }
                finish_reason = "stop"
                if tool_name is not None:
                    message["content"] = None
                    message["tool_calls"] = [
                        {
                            "id": call_ids[index],
                            "type": "function",
                            "function": {"name": tool_name, "arguments": self.tool_arguments},
                        }
                    ]
                    finish_reason = "tool_calls"
                elif scenario == "reasoning":
                    message["reasoning_content"] = self.reasoning
                choices.append(
                    {
                        "index": index,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                )
            body: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "service_tier": "default",
                "system_fingerprint": self.system_fingerprint,
            }
            usage = self._usage(scenario, detailed=True)
            if usage is not None:
                body["usage"] = usage
            return self._json(body)

        # With include_usage OpenAI puts "usage": null on every chunk, then one extra
        # chunk with empty choices; no_usage drops both.
        usage = self._usage(scenario, detailed=True) if self._wants_usage(payload) else None

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": self.system_fingerprint,
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if usage is not None:
                data["usage"] = None
            return data

        chunks: list[tuple[bool, dict[str, Any]]] = []
        if tool_name is not None:
            arguments = self.tool_arguments
            size = max(1, -(-len(arguments) // 4))
            arg_pieces = [arguments[i : i + size] for i in range(0, len(arguments), size)]
            for index in range(n):
                head_call = {
                    "index": 0,
                    "id": call_ids[index],
                    "type": "function",
                    "function": {"name": tool_name, "arguments": ""},
                }
                delta = {"role": "assistant", "content": None, "tool_calls": [head_call]}
                chunks.append((False, chunk(index, {**delta, "refusal": None})))
            for piece in arg_pieces:
                for index in range(n):
                    call = {"index": 0, "function": {"arguments": piece}}
                    chunks.append((True, chunk(index, {"tool_calls": [call]})))
            finish = "tool_calls"
        else:
            reasoning_pieces = split_text(self.reasoning) if scenario == "reasoning" else []
            for index in range(n):
                head: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
                if scenario == "reasoning":
                    head = {"role": "assistant", "content": None, "reasoning_content": ""}
                chunks.append((False, chunk(index, head)))
            for piece in reasoning_pieces:
                for index in range(n):
                    delta = {"content": None, "reasoning_content": piece}
                    chunks.append((True, chunk(index, delta)))
            for piece in split_text(self.reply):
                for index in range(n):
                    delta = {"content": piece}
                    if scenario == "reasoning":
                        delta["reasoning_content"] = None
                    chunks.append((True, chunk(index, delta)))
            finish = "stop"
        for index in range(n):
            chunks.append((False, chunk(index, {}, finish)))

        usage_chunk = None
        if usage is not None:
            usage_chunk = {**chunk(0, {}), "choices": [], "usage": usage}
        return await self._stream(request, scenario, chunks, usage_chunk)

    # ------------------------------------------------------------------ legacy text

    async def _completions(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        payload = self._json_body(recorded)
        if isinstance(payload, web.Response):
            return payload
        model = str(payload["model"])
        n = int(payload.get("n") or 1)
        completion_id = _rand_id("cmpl-")
        created = int(time.time())

        if not payload.get("stream"):
            body: dict[str, Any] = {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": self.system_fingerprint,
                "choices": [
                    {"text": self.reply, "index": i, "logprobs": None, "finish_reason": "stop"}
                    for i in range(n)
                ],
            }
            usage = self._usage(scenario, detailed=False)
            if usage is not None:
                body["usage"] = usage
            return self._json(body)

        usage = self._usage(scenario, detailed=False) if self._wants_usage(payload) else None

        def chunk(index: int, text: str, finish: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "text_completion",
                "created": created,
                "choices": [
                    {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
                ],
                "model": model,
                "system_fingerprint": self.system_fingerprint,
            }
            if usage is not None:
                data["usage"] = None
            return data

        # Legacy completions have no role chunk: the first event already carries text.
        chunks = [
            (True, chunk(index, piece)) for piece in split_text(self.reply) for index in range(n)
        ]
        chunks += [(False, chunk(index, "", "stop")) for index in range(n)]
        usage_chunk = None
        if usage is not None:
            usage_chunk = {**chunk(0, ""), "choices": [], "usage": usage}
        return await self._stream(request, scenario, chunks, usage_chunk)

    async def _edits(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        payload = self._json_body(recorded)
        if isinstance(payload, web.Response):
            return payload
        n = int(payload.get("n") or 1)
        body: dict[str, Any] = {
            "object": "edit",
            "created": int(time.time()),
            "choices": [{"text": self.reply, "index": i} for i in range(n)],
        }
        usage = self._usage(scenario, detailed=False)
        if usage is not None:
            body["usage"] = usage
        return self._json(body)

    # ------------------------------------------------------------------ embeddings

    async def _embeddings(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        payload = self._json_body(recorded)
        if isinstance(payload, web.Response):
            return payload
        raw = payload.get("input")
        # A flat list of ints is one pre-tokenised input, not many inputs.
        if isinstance(raw, str) or (
            isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)
        ):
            items: list[Any] = [raw]
        elif isinstance(raw, list) and raw:
            items = raw
        else:
            return self._error(
                400,
                "'input' is a required property",
                "invalid_request_error",
                None,
                param="input",
            )
        dimensions = int(payload.get("dimensions") or self.embedding_dimensions)
        as_base64 = payload.get("encoding_format") == "base64"
        data = []
        for index, item in enumerate(items):
            vector = embedding_vector(item, dimensions)
            encoded: list[float] | str = vector
            if as_base64:
                # The openai SDK asks for base64 by default: little-endian float32.
                packed = struct.pack(f"<{dimensions}f", *vector)
                encoded = base64.b64encode(packed).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        body: dict[str, Any] = {"object": "list", "data": data, "model": payload["model"]}
        if scenario != "no_usage":
            body["usage"] = {
                "prompt_tokens": self.prompt_tokens,
                "total_tokens": self.prompt_tokens,
            }
        return self._json(body)

    # ------------------------------------------------------------------ moderations

    async def _moderations(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        payload = self._json_body(recorded, require_model=False)
        if isinstance(payload, web.Response):
            return payload
        raw = payload.get("input")
        items = raw if isinstance(raw, list) else [raw]
        flagged = self.moderation_flagged
        result = {
            "flagged": flagged,
            "categories": {c: flagged and c == "violence" for c in MODERATION_CATEGORIES},
            "category_scores": {
                c: (0.98 if flagged and c == "violence" else 1e-06) for c in MODERATION_CATEGORIES
            },
        }
        return self._json(
            {
                "id": _rand_id("modr-"),
                "model": payload.get("model") or "omni-moderation-latest",
                "results": [result for _ in items],
            }
        )

    # ------------------------------------------------------------------ images

    async def _images(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if recorded.json is not None:
            params: dict[str, Any] = recorded.json
        elif recorded.form is not None:
            params = {key: _form_value(recorded.form, key) for key in recorded.form}
        else:
            return self._error(400, MSG_BAD_JSON, "invalid_request_error", None)
        n = int(params.get("n") or 1)
        data = []
        for _ in range(n):
            if params.get("response_format") == "b64_json":
                data.append({"b64_json": base64.b64encode(self.image_bytes).decode()})
            else:
                url = f"{self.base_url}{_IMAGE_FILES_PREFIX}{_rand_id('img-', 24)}.png"
                data.append({"url": url})
        return self._json({"created": int(time.time()), "data": data})

    # ------------------------------------------------------------------ audio

    async def _speech(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        payload = self._json_body(recorded)
        if isinstance(payload, web.Response):
            return payload
        audio_format = payload.get("response_format") or "mp3"
        content_type = SPEECH_CONTENT_TYPES.get(str(audio_format), "audio/mpeg")
        return web.Response(
            body=self.speech_audio, headers=self._headers(**{"Content-Type": content_type})
        )

    async def _transcription(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        form = recorded.form or {}
        task = "translate" if request.path.endswith("/translations") else "transcribe"
        response_format = _form_value(form, "response_format") or "json"
        text = self.transcript
        duration = self.audio_duration
        plain = "text/plain; charset=utf-8"
        if response_format == "json":
            return self._json({"text": text})
        if response_format == "text":
            return web.Response(
                body=f"{text}\n".encode(), headers=self._headers(**{"Content-Type": plain})
            )
        if response_format == "srt":
            srt = f"1\n{_timestamp(0, ',')} --> {_timestamp(duration, ',')}\n{text}\n\n"
            return web.Response(body=srt.encode(), headers=self._headers(**{"Content-Type": plain}))
        if response_format == "vtt":
            vtt = f"WEBVTT\n\n{_timestamp(0, '.')} --> {_timestamp(duration, '.')}\n{text}\n\n"
            return web.Response(body=vtt.encode(), headers=self._headers(**{"Content-Type": plain}))
        if response_format == "verbose_json":
            body: dict[str, Any] = {
                "task": task,
                "language": "english",
                "duration": duration,
                "text": text,
                "segments": [
                    {
                        "id": 0,
                        "seek": 0,
                        "start": 0.0,
                        "end": duration,
                        "text": f" {text}",
                        "tokens": [50364, 2425, 50489],
                        "temperature": 0.0,
                        "avg_logprob": -0.25,
                        "compression_ratio": 0.95,
                        "no_speech_prob": 0.01,
                    }
                ],
            }
            if "word" in _form_values(form, "timestamp_granularities[]"):
                words = text.split()
                step = duration / max(len(words), 1)
                body["words"] = [
                    {"word": word, "start": round(i * step, 3), "end": round((i + 1) * step, 3)}
                    for i, word in enumerate(words)
                ]
            return self._json(body)
        return self._error(
            400,
            f"Invalid value: '{response_format}'. Supported values are: 'json', 'text', "
            "'srt', 'verbose_json', and 'vtt'.",
            "invalid_request_error",
            "invalid_value",
            param="response_format",
        )

    # ------------------------------------------------------------------ models, billing

    def _model_object(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 1686935002, "owned_by": "openai"}

    async def _list_models(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        return self._json({"object": "list", "data": [self._model_object(m) for m in self.models]})

    def _retrieve_model(self, model: str) -> web.Response:
        if model in self.models:
            return self._json(self._model_object(model))
        return self._error(
            404,
            f"The model '{model}' does not exist",
            "invalid_request_error",
            "model_not_found",
            param="model",
        )

    async def _billing_subscription(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        return self._json(
            {
                "object": "billing_subscription",
                "has_payment_method": self.has_payment_method,
                "soft_limit_usd": self.soft_limit_usd,
                "hard_limit_usd": self.hard_limit_usd,
                "system_hard_limit_usd": self.system_hard_limit_usd,
                "access_until": self.access_until,
            }
        )

    async def _billing_usage(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        return self._json({"object": "list", "daily_costs": [], "total_usage": self.total_usage})
