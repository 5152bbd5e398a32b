"""Tencent Hunyuan (channel type 23), converted to and from OpenAI's API.

Hunyuan is a TencentCloud API 3.0 service: every call is a POST of a JSON body to the
service root, named by `X-TC-Action` (`ChatCompletions`, `GetEmbedding`) and
`X-TC-Version: 2023-09-01`, and signed with TC3-HMAC-SHA256 using the channel key
`AppId|SecretId|SecretKey`. Bodies use PascalCase (`Messages: [{Role, Content}]`). Answers
come wrapped in `{"Response": {...}}` and API errors arrive with HTTP 200 as
`Response.Error`; streams are server-sent events whose `data:` objects carry `Choices[].Delta`.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import client_payload, encode_embedding
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME

SERVICE = "hunyuan"
API_VERSION = "2023-09-01"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json"
SIGNED_HEADERS = ("content-type", "host", "x-tc-action")
CHAT_ACTION = "ChatCompletions"
EMBEDDING_ACTION = "GetEmbedding"
EMBEDDING_DIMENSIONS = 1024  # hunyuan-embedding's only size
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "sensitive": "content_filter",
}
SYSTEM_ROLES = frozenset({"system", "developer"})
# TencentCloud error code prefixes and the HTTP status they mean (the API itself says 200).
ERROR_STATUSES = (
    ("AuthFailure", 401),
    ("UnauthorizedOperation", 403),
    ("OperationDenied", 403),
    ("ResourceUnavailable", 403),
    ("FailedOperation.ServiceNotActivated", 403),
    ("FailedOperation.ServiceStop", 403),
    ("RequestLimitExceeded", 429),
    ("LimitExceeded", 429),
    ("ResourceInsufficient", 429),
    ("InvalidParameter", 400),
    ("MissingParameter", 400),
    ("UnknownParameter", 400),
    ("UnsupportedOperation", 400),
    ("InvalidAction", 400),
    ("ResourceNotFound", 404),
)

Json = dict[str, Any]


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def unsupported_content(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_content")


def clamp(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return min(max(float(value), low), high)


# ---------------------------------------------------------------------- TC3 signing


@dataclass(frozen=True)
class Credentials:
    secret_id: str
    secret_key: str


def parse_key(key: str) -> Credentials:
    """`AppId|SecretId|SecretKey` as One API takes it (`SecretId|SecretKey` works too)."""
    parts = [part.strip() for part in key.split("|")]
    if len(parts) == 3 and all(parts[1:]):
        return Credentials(parts[1], parts[2])
    if len(parts) == 2 and all(parts):
        return Credentials(parts[0], parts[1])
    raise UpstreamFailure(
        RelayError(
            500,
            "invalid Tencent channel key: expected AppId|SecretId|SecretKey",
            code="invalid_channel_key",
        ),
        retryable=True,
        from_upstream=False,
    )


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def derive_signing_key(secret_key: str, date: str, service: str) -> bytes:
    secret_date = hmac_sha256(("TC3" + secret_key).encode(), date)
    secret_service = hmac_sha256(secret_date, service)
    return hmac_sha256(secret_service, "tc3_request")


class SigningKeyCache:
    """TC3's signing key depends on the secret, the UTC date and the service only, so one
    derivation serves a channel all day; it is derived again when the date moves on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[tuple[str, str], tuple[str, bytes]] = {}
        self.derivations = 0

    def get(self, secret_key: str, date: str, service: str) -> bytes:
        slot = (sha256_hex(secret_key.encode()), service)
        with self._lock:
            cached = self._keys.get(slot)
            if cached is not None and cached[0] == date:
                return cached[1]
            key = derive_signing_key(secret_key, date, service)
            self.derivations += 1
            self._keys[slot] = (date, key)
            return key


SIGNING_KEYS = SigningKeyCache()


def canonical_request(
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    signed_headers: tuple[str, ...],
    payload: bytes,
) -> str:
    """TC3's canonical request: signed header names and values lower-cased and trimmed."""
    lines = "".join(f"{name}:{headers[name].strip().lower()}\n" for name in signed_headers)
    return "\n".join([method, path, query, lines, ";".join(signed_headers), sha256_hex(payload)])


def tc3_authorization(
    *,
    credentials: Credentials,
    service: str,
    timestamp: int,
    headers: dict[str, str],
    payload: bytes,
    method: str = "POST",
    path: str = "/",
    query: str = "",
    keys: SigningKeyCache | None = None,
) -> str:
    """The `Authorization` header for a request whose lower-case `headers` are all signed."""
    signed = tuple(sorted(name.lower() for name in headers))
    lowered = {name.lower(): value for name, value in headers.items()}
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    canonical = canonical_request(method, path, query, lowered, signed, payload)
    to_sign = f"{ALGORITHM}\n{timestamp}\n{scope}\n{sha256_hex(canonical.encode())}"
    key = (keys or SigningKeyCache()).get(credentials.secret_key, date, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={credentials.secret_id}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )


def now() -> int:
    return int(time.time())


def signed_headers(
    url: str, action: str, payload: bytes, credentials: Credentials, region: str = ""
) -> dict[str, str]:
    host = urlsplit(url).netloc
    timestamp = now()
    signed = {"content-type": CONTENT_TYPE, "host": host, "x-tc-action": action}
    headers = {
        "Authorization": tc3_authorization(
            credentials=credentials,
            service=SERVICE,
            timestamp=timestamp,
            headers=signed,
            payload=payload,
            keys=SIGNING_KEYS,
        ),
        "Content-Type": CONTENT_TYPE,
        "Host": host,
        "X-TC-Action": action,
        "X-TC-Version": API_VERSION,
        "X-TC-Timestamp": str(timestamp),
    }
    if region:
        headers["X-TC-Region"] = region
    return headers


# ---------------------------------------------------------------------- chat request


def part_items(content: Any) -> list[Json]:
    """OpenAI content as Hunyuan `Contents` items (text and image_url)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"Type": "text", "Text": content}] if content else []
    if not isinstance(content, list):
        return [{"Type": "text", "Text": str(content)}]
    items: list[Json] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                items.append({"Type": "text", "Text": str(part["text"])})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise RelayError(400, "image_url part without a url", code="invalid_image_url")
            items.append({"Type": "image_url", "ImageUrl": {"Url": url}})
        else:
            raise unsupported_content(
                f"content part type {kind!r} is not supported by channel type Tencent"
            )
    return items


def text_of(items: list[Json]) -> str:
    return "\n".join(str(item.get("Text") or "") for item in items if item["Type"] == "text")


def tool_calls_of(message: dict[str, Any]) -> list[Json]:
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append(
                {
                    "Id": str(call.get("id") or ""),
                    "Type": "function",
                    "Function": {
                        "Name": str(function.get("name") or ""),
                        "Arguments": str(function.get("arguments") or "{}"),
                    },
                }
            )
    return calls


def convert_message(message: dict[str, Any]) -> Json:
    role = message.get("role")
    items = part_items(message.get("content"))
    converted: Json = {"Role": role}
    if role == "user" and any(item["Type"] == "image_url" for item in items):
        converted["Contents"] = items  # hunyuan-vision; Content and Contents exclude each other
    else:
        converted["Content"] = text_of(items)
    if role == "assistant":
        calls = tool_calls_of(message)
        if calls:
            converted["ToolCalls"] = calls
    elif role == "tool":
        converted["ToolCallId"] = str(message.get("tool_call_id") or "")
    return converted


def mergeable(message: Json) -> bool:
    return set(message) == {"Role", "Content"} and message["Role"] in ("user", "assistant")


def convert_messages(messages: list[Any]) -> list[Json]:
    """Hunyuan wants one leading system message, then user (or tool) and assistant turns in
    alternation: system prompts are joined, and consecutive plain turns of one role merge."""
    system = [
        text_of(part_items(m.get("content")))
        for m in messages
        if isinstance(m, dict) and m.get("role") in SYSTEM_ROLES
    ]
    converted: list[Json] = []
    if any(system):
        converted.append({"Role": "system", "Content": "\n".join(s for s in system if s)})
    for message in messages:
        if not isinstance(message, dict) or message.get("role") in SYSTEM_ROLES:
            continue
        entry = convert_message(message)
        previous = converted[-1] if converted else None
        if (
            previous is not None
            and previous["Role"] == entry["Role"]
            and mergeable(previous)
            and mergeable(entry)
        ):
            previous["Content"] = "\n".join(t for t in (previous["Content"], entry["Content"]) if t)
        else:
            converted.append(entry)
    return converted


def convert_tools(payload: dict[str, Any]) -> list[Json]:
    tools = payload.get("tools")
    if not tools and isinstance(payload.get("functions"), list):
        tools = [{"type": "function", "function": f} for f in payload["functions"]]
    converted = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            parameters = function.get("parameters") or {"type": "object", "properties": {}}
            entry: Json = {
                "Name": str(function["name"]),
                # Hunyuan takes the JSON schema as a string.
                "Parameters": orjson.dumps(parameters).decode(),
            }
            if function.get("description"):
                entry["Description"] = str(function["description"])
            converted.append({"Type": "function", "Function": entry})
    return converted


def tool_choice(choice: Any, tools: list[Json]) -> tuple[str | None, Json | None]:
    """(ToolChoice, CustomTool): Hunyuan's "custom" forces the one tool it names."""
    if choice in ("auto", "none"):
        return choice, None
    name = None
    if choice == "required":
        if len(tools) != 1:
            raise unsupported(
                'tool_choice "required" with several tools is not supported by Tencent'
            )
        name = tools[0]["Function"]["Name"]
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
    for tool in tools:
        if name and tool["Function"]["Name"] == name:
            return "custom", tool
    return None, None


def convert_request(payload: dict[str, Any], model: str, stream: bool) -> Json:
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise unsupported("n > 1 is not supported by channel type Tencent")
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise unsupported("response_format JSON modes are not supported by channel type Tencent")
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    request: Json = {"Model": model, "Messages": convert_messages(messages), "Stream": stream}
    temperature = clamp(payload.get("temperature"), 0.0, 2.0)
    if temperature is not None:
        request["Temperature"] = temperature
    top_p = clamp(payload.get("top_p"), 0.0, 1.0)
    if top_p is not None:
        request["TopP"] = top_p
    stop = payload.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops:
        request["Stop"] = stops
    seed = payload.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        request["Seed"] = seed
    tools = convert_tools(payload)
    if tools:
        request["Tools"] = tools
        choice, custom = tool_choice(payload.get("tool_choice"), tools)
        if choice is not None:
            request["ToolChoice"] = choice
        if custom is not None:
            request["CustomTool"] = custom
    return request


def convert_embedding_request(payload: dict[str, Any]) -> Json:
    value = payload.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise unsupported_content("channel type Tencent embeds strings only, not token arrays")
    dimensions = payload.get("dimensions")
    if dimensions is not None and dimensions != EMBEDDING_DIMENSIONS:
        raise unsupported(f"hunyuan-embedding has {EMBEDDING_DIMENSIONS} dimensions only")
    return {"InputList": texts}


# ---------------------------------------------------------------------- response


def error_status(code: str) -> int:
    for prefix, status in ERROR_STATUSES:
        if code.startswith(prefix):
            return status
    return 500


def raise_error(response: Json) -> None:
    """`Response.Error` (sent with HTTP 200) as the failure it is."""
    error = response.get("Error")
    if not isinstance(error, dict) or not error.get("Code"):
        return
    code = str(error["Code"])
    status = error_status(code)
    raise UpstreamFailure(
        RelayError(status, str(error.get("Message") or code), type=UPSTREAM_ERROR, code=code),
        retryable=status != 400,
    )


def openai_usage(usage: Any) -> Json | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("PromptTokens"), usage.get("CompletionTokens")
    total = usage.get("TotalTokens")
    if not isinstance(prompt, int):
        return None
    if not isinstance(completion, int):
        completion = max(total - prompt, 0) if isinstance(total, int) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


def finish_reason(reason: Any, has_calls: bool = False) -> str | None:
    if not isinstance(reason, str) or not reason:
        return None
    mapped = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def response_tool_calls(calls: Any) -> list[Json]:
    converted = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("Function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            converted.append(
                {
                    "id": call.get("Id") or f"call_{time.time_ns()}",
                    "type": "function",
                    "function": {
                        "name": function.get("Name") or "",
                        "arguments": function.get("Arguments") or "",
                    },
                }
            )
    return converted


def completion_id(response_id: Any) -> str:
    return f"chatcmpl-{response_id}" if response_id else f"chatcmpl-{time.time_ns()}"


def convert_response(response: Json, model: str) -> Json:
    """A ChatCompletions `Response` as an OpenAI chat.completion."""
    choices = []
    for index, choice in enumerate(response.get("Choices") or ()):
        if not isinstance(choice, dict):
            continue
        message = choice.get("Message") if isinstance(choice.get("Message"), dict) else {}
        calls = response_tool_calls(message.get("ToolCalls"))
        content = message.get("Content") or ""
        converted: Json = {"role": "assistant", "content": content or (None if calls else "")}
        if message.get("ReasoningContent"):
            converted["reasoning_content"] = message["ReasoningContent"]
        if calls:
            converted["tool_calls"] = calls
        choices.append(
            {
                "index": index,
                "message": converted,
                "logprobs": None,
                "finish_reason": finish_reason(choice.get("FinishReason"), bool(calls)) or "stop",
            }
        )
    created = response.get("Created")
    result: Json = {
        "id": completion_id(response.get("Id") or response.get("RequestId")),
        "object": "chat.completion",
        "created": created if isinstance(created, int) else int(time.time()),
        "model": model,
        "choices": choices,
    }
    usage = openai_usage(response.get("Usage"))
    if usage is not None:
        result["usage"] = usage
    return result


def convert_embedding_response(response: Json, model: str, encoding_format: Any = None) -> Json:
    items = []
    for position, item in enumerate(response.get("Data") or ()):
        if not isinstance(item, dict):
            continue
        index = item.get("Index")
        vector = item.get("Embedding") if isinstance(item.get("Embedding"), list) else []
        items.append(
            {
                "object": "embedding",
                "index": index if isinstance(index, int) else position,
                "embedding": encode_embedding(vector, encoding_format),
            }
        )
    result: Json = {"object": "list", "data": items, "model": model}
    usage = response.get("Usage")
    if isinstance(usage, dict) and isinstance(usage.get("PromptTokens"), int):
        prompt = usage["PromptTokens"]
        total = usage.get("TotalTokens")
        result["usage"] = {
            "prompt_tokens": prompt,
            "total_tokens": total if isinstance(total, int) else prompt,
        }
    return result


# ---------------------------------------------------------------------- stream


def sse(event: Json) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class TencentStream:
    """Hunyuan's `data:` events in, OpenAI chunks out. Usage is cumulative on every event;
    the event with a FinishReason is the last (Hunyuan sends no end marker)."""

    client_wants_usage: bool
    model: str
    usage: Json | None = None
    saw_done: bool = False
    upstream_error: Json | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    started: bool = False
    # Hunyuan numbers tool calls by Id only; OpenAI wants indexes from 0.
    call_indexes: dict[str, int] = field(default_factory=dict)

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:"):
            return None
        try:
            event = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict):
            return None
        if isinstance(event.get("Response"), dict):
            event = event["Response"]
        if isinstance(event.get("ErrorMsg"), dict) or isinstance(event.get("Error"), dict):
            return self._error(event)
        usage = openai_usage(event.get("Usage"))
        if usage is not None:
            self.usage = usage
        if self.saw_done:
            return None
        if not self.id:
            self.id = completion_id(event.get("Id"))
            if isinstance(event.get("Created"), int):
                self.created = event["Created"]
        choices = [c for c in event.get("Choices") or () if isinstance(c, dict)]
        if not choices:
            return None
        choice = choices[0]
        delta = self._delta(choice.get("Delta") if isinstance(choice.get("Delta"), dict) else {})
        finish = finish_reason(choice.get("FinishReason"), bool(self.call_indexes))
        if not delta and finish is None:
            return None
        if not self.started:
            delta = {"role": "assistant", **delta}
            delta.setdefault("content", "")
            self.started = True
        entry = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        frames = sse(self._envelope([entry]))
        if finish is not None:
            if self.usage is not None and self.client_wants_usage:
                frames += sse({**self._envelope([]), "usage": self.usage})
            self.saw_done = True
            frames += DONE_FRAME
        return frames

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _envelope(self, choices: list[Json]) -> Json:
        if not self.id:
            self.id = completion_id(None)
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _delta(self, delta: Json) -> Json:
        converted: Json = {}
        for source, target in (("ReasoningContent", "reasoning_content"), ("Content", "content")):
            value = delta.get(source)
            if isinstance(value, str) and value:
                converted[target] = value
                self.generated.append(value)
        calls = []
        for call in delta.get("ToolCalls") or ():
            if not isinstance(call, dict):
                continue
            call_id = str(call.get("Id") or "")
            function = call.get("Function") if isinstance(call.get("Function"), dict) else {}
            entry: Json = {}
            if call_id not in self.call_indexes:
                self.call_indexes[call_id] = len(self.call_indexes)
                entry = {"id": call_id or f"call_{time.time_ns()}", "type": "function"}
                entry["function"] = {"name": str(function.get("Name") or "")}
                self.generated.append(entry["function"]["name"])
            arguments = function.get("Arguments")
            if isinstance(arguments, str) and arguments:
                entry.setdefault("function", {})["arguments"] = arguments
                self.generated.append(arguments)
            if entry:
                calls.append({"index": self.call_indexes[call_id], **entry})
        if calls:
            converted["tool_calls"] = calls
        return converted

    def _error(self, event: Json) -> bytes:
        error = event.get("ErrorMsg") or event.get("Error") or {}
        self.upstream_error = {
            "message": str(error.get("Msg") or error.get("Message") or "upstream stream error"),
            "type": UPSTREAM_ERROR,
            "param": None,
            "code": error.get("Code"),
        }
        return sse({"error": self.upstream_error})


# ---------------------------------------------------------------------- adaptor


class TencentAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is RelayMode.CHAT:
            action = CHAT_ACTION
            payload = convert_request(body.payload, attempt.model, attempt.stream)
        elif attempt.mode is RelayMode.EMBEDDINGS:
            action = EMBEDDING_ACTION
            payload = convert_embedding_request(body.payload)
        else:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Tencent"
            )
        credentials = parse_key(attempt.channel.key)
        url = base_url(attempt) + "/"
        content = orjson.dumps(payload)
        region = attempt.channel.config.get("region")
        headers = signed_headers(
            url, action, content, credentials, region if isinstance(region, str) else ""
        )
        headers["Accept"] = "text/event-stream" if attempt.stream else CONTENT_TYPE
        return UpstreamRequest("POST", url, headers, content)

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Tencent")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        response = data.get("Response") if isinstance(data, dict) else None
        if not isinstance(response, dict):
            return body
        raise_error(response)
        if attempt.mode is RelayMode.EMBEDDINGS:
            encoding = client_payload(attempt).get("encoding_format")
            return orjson.dumps(convert_embedding_response(response, attempt.model, encoding))
        return orjson.dumps(convert_response(response, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return TencentStream(client_wants_usage=client_wants_usage, model=attempt.model)
