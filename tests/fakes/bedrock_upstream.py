from __future__ import annotations

import asyncio
import base64
import datetime
import hmac
import json
import re
import secrets
import string
import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.fakes.anthropic_upstream import InvalidRequest
from tests.fakes.anthropic_upstream import validate as validate_anthropic
from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake AWS Bedrock runtime: a real HTTP server speaking InvokeModel and
# InvokeModelWithResponseStream for Claude (Anthropic's Messages body) and Llama 3.
#
#     with FakeBedrock(access_key="AKIDFAKE", secret_key="s3cr3t", region="us-east-1") as fake:
#         ...  # point an AWS channel's base URL at fake.base_url
#         assert fake.last_request.model_id == "anthropic.claude-3-5-sonnet-20240620-v1:0"
#
# Strict where a gateway can go wrong: every request must carry a SigV4 signature that the
# fake recomputes with botocore from the received method, path, signed headers and body
# and the shared secret (403 with AWS's messages otherwise, skewed clocks included); bodies
# are checked like Bedrock does (no extraneous keys, `anthropic_version`, ranges, Llama's
# `max_gen_len`), Claude bodies then like Anthropic's (alternating roles, tool results...).
# Streams are AWS event-stream binary frames, `chunk` events carrying base64 JSON.

__all__ = [
    "ERROR_SCENARIOS",
    "SCENARIOS",
    "FakeBedrock",
    "RecordedRequest",
    "chunk_message",
    "encode_message",
    "exception_message",
]

ERROR_SCENARIOS = frozenset({"error_400", "error_403", "error_429", "error_500"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "max_tokens", "no_usage", "stream_exception"}
WRITE_MODES = frozenset({"frame", "split", "packed"})
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)
EVENT_STREAM = "application/vnd.amazon.eventstream"

_PATH = re.compile(r"^/model/(?P<model>[^/]+)/(?P<action>invoke|invoke-with-response-stream)$")
_CLAUDE_ID = re.compile(r"^(?:[a-z]{2,6}\.)?anthropic\.claude-[\w.-]+(?::\d+)?$")
_LLAMA_ID = re.compile(r"^(?:[a-z]{2,6}\.)?meta\.llama3-[\w.-]+(?::\d+)?$")
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
_CLAUDE_KEYS = frozenset(
    {
        "anthropic_version",
        "anthropic_beta",
        "max_tokens",
        "system",
        "messages",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "tools",
        "tool_choice",
        "thinking",
    }
)
_LLAMA_KEYS = frozenset({"prompt", "temperature", "top_p", "max_gen_len", "images"})
_ERRORS = {
    "error_400": (400, "ValidationException", "Input is too long for requested model."),
    "error_403": (
        403,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    ),
    "error_429": (
        429,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    ),
    "error_500": (500, "InternalServerException", "The server encountered an internal error."),
}
SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)


class Rejected(Exception):
    """An answer AWS would give instead of invoking the model."""

    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type_, message


def malformed(detail: str) -> Rejected:
    return Rejected(
        400,
        "ValidationException",
        f"Malformed input request: {detail}, please reformat your input and try again.",
    )


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as received, percent-encoding kept
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: dict[str, Any] | None = None
    model_id: str | None = None


# ---------------------------------------------------------------------- event stream


def _header(name: str, value: str | bytes | bool | int) -> bytes:
    raw_name = name.encode()
    head = struct.pack(">B", len(raw_name)) + raw_name
    if isinstance(value, bool):
        return head + struct.pack(">B", 0 if value else 1)
    if isinstance(value, int):
        return head + struct.pack(">Bi", 4, value)
    if isinstance(value, bytes):
        return head + struct.pack(">BH", 6, len(value)) + value
    encoded = value.encode()
    return head + struct.pack(">BH", 7, len(encoded)) + encoded


def encode_message(headers: dict[str, str | bytes | bool | int], payload: bytes) -> bytes:
    """One event-stream message: prelude with its CRC, headers, payload, message CRC."""
    raw_headers = b"".join(_header(name, value) for name, value in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(raw_headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack(">I", zlib.crc32(message))


def chunk_message(event: dict[str, Any]) -> bytes:
    """A Bedrock `chunk`: the model's event as base64 JSON, with AWS's random padding `p`
    (it hides the length of the content from an observer of the encrypted stream)."""
    data = base64.b64encode(json.dumps(event, separators=(",", ":")).encode()).decode()
    padding = string.ascii_letters[: secrets.randbelow(len(string.ascii_letters))]
    payload = json.dumps({"bytes": data, "p": padding}).encode()
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, payload)


def exception_message(exception_type: str, message: str) -> bytes:
    headers = {
        ":exception-type": exception_type,
        ":content-type": "application/json",
        ":message-type": "exception",
    }
    return encode_message(headers, json.dumps({"message": message}).encode())


# ---------------------------------------------------------------------- SigV4


def _amz_time(value: str) -> datetime.datetime:
    try:
        return datetime.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise Rejected(400, "InvalidSignatureException", "Invalid X-Amz-Date") from None


def check_signature(
    recorded: RecordedRequest, query: str, secret_keys: dict[str, str], region: str
) -> None:
    """Recompute the SigV4 signature from what arrived, as AWS does; raise what AWS says."""
    authorization = recorded.headers.get("authorization")
    if not authorization:
        raise Rejected(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        raise Rejected(
            403, "IncompleteSignatureException", "Authorization header requires a Credential"
        )
    secret = secret_keys.get(match["key"])
    if secret is None:
        raise Rejected(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        )
    if match["service"] != "bedrock":
        raise Rejected(
            403,
            "InvalidSignatureException",
            "Credential should be scoped to correct service: 'bedrock'.",
        )
    if match["region"] != region:
        raise Rejected(
            403,
            "InvalidSignatureException",
            f"Credential should be scoped to a valid region, not '{match['region']}'.",
        )
    stamp = recorded.headers.get("x-amz-date", "")
    signed_at = _amz_time(stamp)
    now = datetime.datetime.now(datetime.UTC)
    if abs(now - signed_at) > MAX_CLOCK_SKEW:
        raise Rejected(
            403,
            "InvalidSignatureException",
            f"Signature expired: {stamp} is now earlier than "
            f"{(now - MAX_CLOCK_SKEW).strftime('%Y%m%dT%H%M%SZ')}",
        )
    signed = match["signed"].split(";")
    if "host" not in signed or any(name not in recorded.headers for name in signed):
        raise Rejected(403, "InvalidSignatureException", SIGNATURE_MISMATCH)
    url = f"http://{recorded.headers['host']}{recorded.path}" + (f"?{query}" if query else "")
    request = AWSRequest(
        method=recorded.method,
        url=url,
        data=recorded.body,
        headers={name: recorded.headers[name] for name in signed},
    )
    request.context["timestamp"] = stamp
    auth = SigV4Auth(Credentials(match["key"], secret), "bedrock", region)
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    if match["date"] != stamp[:8] or not hmac.compare_digest(expected, match["signature"]):
        raise Rejected(403, "InvalidSignatureException", SIGNATURE_MISMATCH)


# ---------------------------------------------------------------------- validation


def _check_range(payload: dict[str, Any], name: str, low: float, high: float) -> None:
    value = payload.get(name)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise malformed(f"#/{name}: expected type: Number, found: {type(value).__name__}")
    if value < low:
        raise malformed(f"#/{name}: {value} is not greater or equal to {low}")
    if value > high:
        raise malformed(f"#/{name}: {value} is not less or equal to {high}")


def _check_keys(payload: dict[str, Any], allowed: frozenset[str]) -> None:
    for key in payload:
        if key not in allowed:
            raise malformed(f"#: extraneous key [{key}] is not permitted")


def _image_sources(payload: dict[str, Any]) -> list[Any]:
    sources: list[Any] = []
    for message in payload.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict) and block.get("type") == "image":
                sources.append(block.get("source"))
    return sources


def validate_claude(payload: dict[str, Any], model_id: str) -> None:
    _check_keys(payload, _CLAUDE_KEYS)
    if "anthropic_version" not in payload:
        raise malformed("#: required key [anthropic_version] not found")
    if payload["anthropic_version"] != BEDROCK_ANTHROPIC_VERSION:
        raise Rejected(400, "ValidationException", "invalid anthropic_version")
    for source in _image_sources(payload):
        # Bedrock's Claude takes inline images only.
        if isinstance(source, dict) and source.get("type") != "base64":
            raise malformed("#/messages: image source type must be base64")
    _check_range(payload, "temperature", 0, 1)
    _check_range(payload, "top_p", 0, 1)
    _check_range(payload, "top_k", 0, 500)
    try:
        validate_anthropic({**payload, "model": model_id})
    except InvalidRequest as error:
        raise Rejected(400, "ValidationException", str(error)) from None


def validate_llama(payload: dict[str, Any]) -> None:
    _check_keys(payload, _LLAMA_KEYS)
    if not isinstance(payload.get("prompt"), str) or not payload["prompt"]:
        raise malformed("#: required key [prompt] not found")
    max_gen_len = payload.get("max_gen_len")
    if max_gen_len is not None and (
        not isinstance(max_gen_len, int) or isinstance(max_gen_len, bool)
    ):
        raise malformed("#/max_gen_len: expected type: Integer")
    _check_range(payload, "max_gen_len", 1, 2048)
    _check_range(payload, "temperature", 0, 1)
    _check_range(payload, "top_p", 0, 1)


# ---------------------------------------------------------------------- server


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _rand_id(prefix: str, length: int = 24) -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(length))


class FakeBedrock(FakeServer[RecordedRequest]):
    """A local Bedrock runtime with switchable scenarios.

    Public attributes may be changed from the test thread at any time; the server reads
    them when the next request arrives."""

    scenarios = SCENARIOS
    thread_name = "fake-bedrock"

    def __init__(
        self,
        access_key: str = "AKIDFAKEBEDROCK",
        secret_key: str = "fake/Secret+Key",
        region: str = "us-east-1",
        reply: str = "Hello from fake Bedrock.",
        input_tokens: int = 17,
        output_tokens: int = 8,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.secret_keys = {access_key: secret_key}
        self.region = region
        self.reply = reply
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.tool_preamble = "Let me check."
        self.tool_input: dict[str, Any] = {"location": "Paris"}
        # How stream bytes go out: one write per frame, frames cut in small pieces, or
        # the whole stream in one write.
        self.write_mode = "frame"
        self.split_size = 7

    def reset(self) -> None:
        super().reset()
        self.write_mode = "frame"

    # ------------------------------------------------------------------ request entry

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        raw_path = request.raw_path.split("?", 1)[0]
        match = _PATH.match(raw_path)
        model_id = unquote(match["model"]) if match else None
        headers = lower_headers(request)
        return RecordedRequest(request.method, raw_path, headers, body, json_object(body), model_id)

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        match = _PATH.match(recorded.path)
        model_id, parsed = recorded.model_id, recorded.json
        try:
            if request.method != "POST" or match is None:
                raise Rejected(404, "UnknownOperationException", "Not Found")
            check_signature(recorded, request.query_string, self.secret_keys, self.region)
            family = self._family(model_id or "")
            if parsed is None:
                raise malformed("#: expected type: JSONObject")
            if family == "claude":
                validate_claude(parsed, model_id or "")
            else:
                validate_llama(parsed)
            if scenario in ERROR_SCENARIOS:
                raise Rejected(*_ERRORS[scenario])
        except Rejected as rejected:
            return self._error(rejected)
        if match["action"] == "invoke":
            answer = self._claude(parsed, scenario) if family == "claude" else self._llama(scenario)
            return self._json(answer, self._token_headers())
        events = (
            self._claude_events(parsed, scenario)
            if family == "claude"
            else self._llama_events(scenario)
        )
        return await self._stream(request, events, scenario)

    def _family(self, model_id: str) -> str:
        if _CLAUDE_ID.match(model_id):
            return "claude"
        if _LLAMA_ID.match(model_id):
            return "llama"
        raise Rejected(400, "ValidationException", "The provided model identifier is invalid.")

    # ------------------------------------------------------------------ responses

    def _json(
        self, data: Any, extra: dict[str, str] | None = None, status: int = 200
    ) -> web.Response:
        headers = {
            "Content-Type": "application/json",
            "x-amzn-RequestId": str(uuid.uuid4()),
            **(extra or {}),
        }
        return web.Response(status=status, body=json.dumps(data).encode(), headers=headers)

    def _error(self, rejected: Rejected) -> web.Response:
        # Bedrock's REST-JSON errors: the type in a header, only the message in the body.
        error_type = f"{rejected.type}:http://internal.amazon.com/coral/com.amazon.bedrock/"
        return self._json(
            {"message": rejected.message}, {"x-amzn-ErrorType": error_type}, rejected.status
        )

    def _token_headers(self) -> dict[str, str]:
        return {
            "X-Amzn-Bedrock-Input-Token-Count": str(self.input_tokens),
            "X-Amzn-Bedrock-Output-Token-Count": str(self.output_tokens),
            "X-Amzn-Bedrock-Invocation-Latency": "321",
        }

    def _metrics(self) -> dict[str, int]:
        return {
            "inputTokenCount": self.input_tokens,
            "outputTokenCount": self.output_tokens,
            "invocationLatency": 321,
            "firstByteLatency": 123,
        }

    def _claude_content(self, payload: dict[str, Any], scenario: str) -> tuple[list[Any], str]:
        tools = payload.get("tools")
        choice = payload.get("tool_choice") or {}
        last = payload["messages"][-1].get("content")
        answered = isinstance(last, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last
        )
        if tools and choice.get("type") != "none" and not answered:
            name = choice["name"] if choice.get("type") == "tool" else tools[0]["name"]
            call = {"type": "tool_use", "id": _rand_id("toolu_bdrk_"), "name": name}
            blocks = [
                {"type": "text", "text": self.tool_preamble},
                {**call, "input": self.tool_input},
            ]
            return blocks, "tool_use"
        if scenario == "max_tokens":
            return [{"type": "text", "text": self.reply[: len(self.reply) // 2]}], "max_tokens"
        return [{"type": "text", "text": self.reply}], "end_turn"

    def _claude(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        content, stop_reason = self._claude_content(payload, scenario)
        return {
            "id": _rand_id("msg_bdrk_"),
            "type": "message",
            "role": "assistant",
            "model": "claude-from-bedrock",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }

    def _llama(self, scenario: str) -> dict[str, Any]:
        truncated = scenario == "max_tokens"
        return {
            "generation": self.reply[: len(self.reply) // 2] if truncated else self.reply,
            "prompt_token_count": self.input_tokens,
            "generation_token_count": self.output_tokens,
            "stop_reason": "length" if truncated else "stop",
        }

    # ------------------------------------------------------------------ streaming

    def _claude_events(self, payload: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
        message = self._claude(payload, scenario)
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": self.input_tokens, "output_tokens": 1}
        delta_usage: dict[str, Any] | None = {"output_tokens": self.output_tokens}
        if scenario == "no_usage":
            del start["usage"]
            delta_usage = None
        events: list[dict[str, Any]] = [{"type": "message_start", "message": start}]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                head: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in _split(block["text"])]
            else:
                head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                arguments = json.dumps(block["input"])
                deltas = [
                    {"type": "input_json_delta", "partial_json": p} for p in _split(arguments)
                ]
            events.append({"type": "content_block_start", "index": index, "content_block": head})
            events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
            events.append({"type": "content_block_stop", "index": index})
        final: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        }
        if delta_usage is not None:
            final["usage"] = delta_usage
        events.append(final)
        events.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": self._metrics()})
        return events

    def _llama_events(self, scenario: str) -> list[dict[str, Any]]:
        answer = self._llama(scenario)
        pieces = _split(answer["generation"])
        events: list[dict[str, Any]] = []
        for position, piece in enumerate(pieces):
            events.append(
                {
                    "generation": piece,
                    "prompt_token_count": self.input_tokens if position == 0 else None,
                    # Cumulative, as Bedrock counts: the last full chunk has the total.
                    "generation_token_count": max(
                        1, self.output_tokens * (position + 1) // len(pieces)
                    ),
                    "stop_reason": None,
                }
            )
        events.append(
            {
                "generation": "",
                "prompt_token_count": None,
                "generation_token_count": self.output_tokens,
                "stop_reason": answer["stop_reason"],
                "amazon-bedrock-invocationMetrics": self._metrics(),
            }
        )
        return events

    async def _stream(
        self, request: web.Request, events: list[dict[str, Any]], scenario: str
    ) -> web.StreamResponse:
        frames = [chunk_message(event) for event in events]
        if scenario == "stream_exception":
            # After a 200, failures come as an exception message, and the stream ends.
            frames = frames[:3] + [
                exception_message("throttlingException", "Too many tokens, please wait.")
            ]
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": EVENT_STREAM,
                "x-amzn-RequestId": str(uuid.uuid4()),
                "X-Amzn-Bedrock-Content-Type": "application/json",
            },
        )
        await response.prepare(request)
        if self.write_mode == "packed":
            await response.write(b"".join(frames))
        else:
            for frame in frames:
                if self.write_mode == "split":
                    for start in range(0, len(frame), self.split_size):
                        await response.write(frame[start : start + self.split_size])
                        await asyncio.sleep(0)
                else:
                    await response.write(frame)
        await response.write_eof()
        return response
