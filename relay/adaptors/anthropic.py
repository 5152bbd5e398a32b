"""Anthropic's Messages API, converted to and from OpenAI's chat completions.

Requests become `POST /v1/messages` bodies (system prompt apart, content blocks, strictly
alternating roles); answers and SSE events come back as `chat.completion` objects and
`chat.completion.chunk` frames, with Anthropic's usage turned into OpenAI's.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.openai import base_url
from relay.errors import RelayError
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME

ANTHROPIC_VERSION = "2023-06-01"
# Anthropic requires max_tokens; OpenAI clients usually leave it out.
DEFAULT_MAX_TOKENS = 4096
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
SYSTEM_ROLES = frozenset({"system", "developer"})
TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
# `data:<type>[;param=value...];base64,<data>`
DATA_URL = re.compile(
    r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?:;[^;,]*)*;base64,(?P<data>.*)$", re.DOTALL
)
# Sampling parameters both APIs share under the same name.
SHARED_PARAMETERS = ("temperature", "top_p", "top_k")

Block = dict[str, Any]


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


# ---------------------------------------------------------------------- request


def text_block(text: str, part: dict[str, Any] | None = None) -> Block:
    block: Block = {"type": "text", "text": text}
    # Prompt caching marks survive the conversion: clients aiming at Claude send them.
    if part is not None and isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def image_block(part: dict[str, Any]) -> Block:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise RelayError(400, "image_url part without a url", code="invalid_image_url")
    match = DATA_URL.match(url)
    if match:
        source = {"type": "base64", "media_type": match["media_type"], "data": match["data"]}
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise RelayError(
            400, "image URLs must be base64 data: URLs or http(s) URLs", code="invalid_image_url"
        )
    block: Block = {"type": "image", "source": source}
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def content_blocks(content: Any) -> list[Block]:
    """OpenAI message content (a string or parts) as Anthropic blocks, empty text dropped
    (Anthropic rejects empty text blocks)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_block(content)] if content else []
    if not isinstance(content, list):
        return [text_block(str(content))]
    blocks: list[Block] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append(text_block(str(part["text"]), part))
        elif kind == "image_url":
            blocks.append(image_block(part))
        else:
            raise RelayError(
                400,
                f"content part type {kind!r} is not supported by channel type Anthropic",
                code="unsupported_content",
            )
    return blocks


def tool_use_block(call: dict[str, Any]) -> Block | None:
    function = call.get("function")
    if not isinstance(function, dict):
        return None
    try:
        arguments = orjson.loads(function.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        arguments = None
    # Anthropic wants an object; a model's broken arguments echoed back must not fail the turn.
    return {
        "type": "tool_use",
        "id": str(call.get("id") or ""),
        "name": str(function.get("name") or ""),
        "input": arguments if isinstance(arguments, dict) else {},
    }


def tool_result_block(message: dict[str, Any]) -> Block:
    block: Block = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or "")}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    else:
        blocks = content_blocks(content)
        if blocks:
            block["content"] = blocks
    return block


def message_blocks(message: dict[str, Any]) -> tuple[str, list[Block]]:
    """(Anthropic role, blocks) of one non-system OpenAI message."""
    role = message.get("role")
    if role == "tool":
        return "user", [tool_result_block(message)]
    blocks = content_blocks(message.get("content"))
    if role == "assistant":
        for call in message.get("tool_calls") or ():
            block = tool_use_block(call) if isinstance(call, dict) else None
            if block is not None:
                blocks.append(block)
        return "assistant", blocks
    return "user", blocks


def merge_turns(turns: list[tuple[str, list[Block]]]) -> list[dict[str, Any]]:
    """Anthropic requires user and assistant to alternate: consecutive turns of one role
    (parallel tool results, a tool result then a user remark) become one message."""
    merged: list[dict[str, Any]] = []
    for role, blocks in turns:
        if not blocks:
            continue  # Anthropic rejects messages without content
        if merged and merged[-1]["role"] == role:
            merged[-1]["content"].extend(blocks)
        else:
            merged.append({"role": role, "content": list(blocks)})
    for message in merged:
        content = message["content"]
        if len(content) == 1 and set(content[0]) == {"type", "text"}:
            message["content"] = content[0]["text"]
    return merged


def system_prompt(messages: list[Any]) -> str | list[Block] | None:
    blocks: list[Block] = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") in SYSTEM_ROLES:
            blocks.extend(content_blocks(message.get("content")))
    if not blocks:
        return None
    if len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
        return blocks[0]["text"]
    return blocks


def convert_tools(tools: Any) -> list[Block]:
    converted: list[Block] = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict):
            continue
        entry: Block = {
            "name": function.get("name"),
            "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
        }
        if function.get("description"):
            entry["description"] = function["description"]
        converted.append(entry)
    return converted


def convert_tool_choice(choice: Any, parallel: Any) -> Block | None:
    converted: Block | None = None
    if isinstance(choice, str) and choice in TOOL_CHOICES:
        converted = {"type": TOOL_CHOICES[choice]}
    elif isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and function.get("name"):
            converted = {"type": "tool", "name": function["name"]}
    if parallel is False:
        converted = converted or {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


def stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [item for item in stop if isinstance(item, str) and item]
    return []


def convert_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat request as an Anthropic Messages request."""
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens if isinstance(max_tokens, int) else DEFAULT_MAX_TOKENS,
        "messages": merge_turns(
            [
                message_blocks(message)
                for message in messages
                if isinstance(message, dict) and message.get("role") not in SYSTEM_ROLES
            ]
        ),
    }
    system = system_prompt(messages)
    if system is not None:
        request["system"] = system
    tools = convert_tools(payload.get("tools"))
    if tools:
        request["tools"] = tools
        choice = convert_tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
        if choice is not None:
            request["tool_choice"] = choice
    stops = stop_sequences(payload.get("stop"))
    if stops:
        request["stop_sequences"] = stops
    for name in SHARED_PARAMETERS:
        if payload.get(name) is not None:
            request[name] = payload[name]
    temperature = request.get("temperature")
    if isinstance(temperature, int | float) and temperature > 1:
        request["temperature"] = 1  # OpenAI allows up to 2, Anthropic refuses above 1
    if isinstance(payload.get("thinking"), dict):
        request["thinking"] = payload["thinking"]  # Claude's own switch, sent by aware clients
    if isinstance(payload.get("user"), str) and payload["user"]:
        request["metadata"] = {"user_id": payload["user"]}
    if payload.get("stream") is True:
        request["stream"] = True
    return request


def request_headers(attempt: Attempt) -> dict[str, str]:
    headers = {
        "x-api-key": attempt.channel.key,
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
        "accept": "text/event-stream" if attempt.stream else "application/json",
    }
    beta = attempt.request.header("anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta
    return headers


# ---------------------------------------------------------------------- response


def openai_usage(usage: Any) -> dict[str, int]:
    """Cache writes and reads are prompt tokens too (Anthropic reports them apart)."""
    usage = usage if isinstance(usage, dict) else {}

    def count(name: str) -> int:
        value = usage.get(name)
        return value if isinstance(value, int) else 0

    cached = count("cache_read_input_tokens")
    prompt = count("input_tokens") + count("cache_creation_input_tokens") + cached
    completion = count("output_tokens")
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        result["prompt_tokens_details"] = {"cached_tokens": cached}
    return result


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def completion_id(message_id: Any) -> str:
    return f"chatcmpl-{message_id}" if message_id else f"chatcmpl-{time.time_ns()}"


def tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {
            "name": block.get("name"),
            "arguments": orjson.dumps(block.get("input") or {}).decode(),
        },
    }


def assistant_message(content: Any) -> dict[str, Any]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            thoughts.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            calls.append(tool_call(block))
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    return message


def convert_response(message: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Message as an OpenAI chat.completion."""
    return {
        "id": completion_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": assistant_message(message.get("content")),
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": openai_usage(message.get("usage")),
    }


# ---------------------------------------------------------------------- stream


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class AnthropicStream:
    """Anthropic's typed events in, OpenAI chunks out; one instance per response."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    # Anthropic content-block index -> OpenAI tool_calls index (tool calls count from 0).
    tool_indexes: dict[int, int] = field(default_factory=dict)
    start_usage: dict[str, Any] = field(default_factory=dict)
    finished: bool = False

    def accept(self, line: bytes) -> bytes | None:
        # `event:` names repeat the data's `type`; blank lines and comments carry nothing.
        if not line.startswith(b"data:"):
            return None
        try:
            event = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict):
            return None
        handler = getattr(self, f"_on_{event.get('type')}", None)
        return handler(event) if handler is not None else None

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(self._envelope([choice]))

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.id:
            self.id = completion_id(None)  # no message_start yet: still one id per stream
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _on_message_start(self, event: dict[str, Any]) -> bytes:
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        self.id = completion_id(message.get("id"))
        self.model = message.get("model") or self.model
        if isinstance(message.get("usage"), dict):
            self.start_usage = dict(message["usage"])
        return self._chunk({"role": "assistant", "content": ""})

    def _on_content_block_start(self, event: dict[str, Any]) -> bytes | None:
        block = event.get("content_block")
        if not isinstance(block, dict):
            return None
        kind = block.get("type")
        if kind == "tool_use":
            return self._tool_call_head(event.get("index"), block)
        if kind == "text" and block.get("text"):
            return self._text("content", str(block["text"]))
        if kind == "thinking" and block.get("thinking"):
            return self._text("reasoning_content", str(block["thinking"]))
        return None

    def _tool_call_head(self, block_index: Any, block: dict[str, Any]) -> bytes:
        index = len(self.tool_indexes)
        if isinstance(block_index, int):
            self.tool_indexes[block_index] = index
        name = str(block.get("name") or "")
        self.generated.append(name)
        call = {
            "index": index,
            "id": block.get("id"),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return self._chunk({"tool_calls": [call]})

    def _on_content_block_delta(self, event: dict[str, Any]) -> bytes | None:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            return None
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text("content", str(delta.get("text") or ""))
        if kind == "thinking_delta":
            return self._text("reasoning_content", str(delta.get("thinking") or ""))
        if kind == "input_json_delta":
            return self._arguments(event.get("index"), str(delta.get("partial_json") or ""))
        return None  # signature_delta and future kinds have no OpenAI counterpart

    def _text(self, name: str, text: str) -> bytes | None:
        if not text:
            return None
        self.generated.append(text)
        return self._chunk({name: text})

    def _arguments(self, block_index: Any, fragment: str) -> bytes | None:
        index = self.tool_indexes.get(block_index) if isinstance(block_index, int) else None
        if index is None or not fragment:
            return None
        self.generated.append(fragment)
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def _on_message_delta(self, event: dict[str, Any]) -> bytes:
        # message_delta usage is cumulative: its counts replace message_start's.
        if isinstance(event.get("usage"), dict):
            merged = {**self.start_usage, **event["usage"]}
            self.usage = openai_usage(merged)
        delta = event.get("delta") if isinstance(event.get("delta"), dict) else {}
        self.finished = True
        return self._chunk({}, finish_reason(delta.get("stop_reason")))

    def _on_message_stop(self, event: dict[str, Any]) -> bytes:
        frames = b"" if self.finished else self._chunk({}, "stop")
        self.finished = True
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        self.saw_done = True
        return frames + DONE_FRAME

    def _on_error(self, event: dict[str, Any]) -> bytes:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        self.upstream_error = {
            "message": str(error.get("message") or "upstream stream error"),
            "type": str(error.get("type") or "upstream_error"),
            "param": None,
            "code": None,
        }
        return sse({"error": self.upstream_error})


# ---------------------------------------------------------------------- native


def native_request(attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
    """For clients of `/v1/messages`: their own Messages body, only the model mapped (the
    relay's edits), with their anthropic-version when they sent one."""
    headers = request_headers(attempt)
    version = attempt.request.header("anthropic-version")
    if version:
        headers["anthropic-version"] = version
    url = base_url(attempt).removesuffix("/v1") + "/v1/messages"
    return UpstreamRequest("POST", url, headers, body.to_bytes())


def event_frame(event: dict[str, Any]) -> bytes:
    """One event as Anthropic writes it: the `event:` name repeats the data's type."""
    name = str(event.get("type") or "message")
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass
class AnthropicPassthrough:
    """Anthropic's events to a Messages API client as they came, a whole event (`event:` and
    `data:` lines) at a time; on the way, what billing needs: the usage of message_start and
    message_delta (OpenAI's terms, cache tokens in the prompt), else the generated text."""

    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    start_usage: dict[str, Any] = field(default_factory=dict)
    pending: list[bytes] = field(default_factory=list)

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def accept(self, line: bytes) -> bytes | None:
        if line:
            self.pending.append(line)
            if line.startswith(b"data:"):
                try:
                    event = orjson.loads(line[5:].strip())
                except orjson.JSONDecodeError:
                    return None
                if isinstance(event, dict):
                    self.observe(event)
            return None
        if not self.pending:
            return None
        frame = b"\n".join(self.pending) + b"\n\n"
        self.pending = []
        return frame

    def observe(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") if isinstance(event.get("message"), dict) else {}
            if isinstance(message.get("usage"), dict):
                self.start_usage = dict(message["usage"])
        elif kind == "content_block_start":
            block = event.get("content_block")
            if isinstance(block, dict):
                for name in ("text", "thinking", "name"):
                    if isinstance(block.get(name), str):
                        self.generated.append(block[name])
        elif kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict):
                for name in ("text", "thinking", "partial_json"):
                    if isinstance(delta.get(name), str):
                        self.generated.append(delta[name])
        elif kind == "message_delta" and isinstance(event.get("usage"), dict):
            # Cumulative counts: message_delta's replace message_start's.
            self.usage = openai_usage({**self.start_usage, **event["usage"]})
        elif kind == "message_stop":
            self.saw_done = True
        elif kind == "error":
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            self.upstream_error = {
                "message": str(error.get("message") or "upstream stream error"),
                "type": str(error.get("type") or "api_error"),
            }


# ---------------------------------------------------------------------- adaptor


class AnthropicAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is RelayMode.MESSAGES:
            return native_request(attempt, body)
        if attempt.mode is not RelayMode.CHAT:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Anthropic"
            )
        payload = convert_request(body.payload, attempt.model)
        url = base_url(attempt).removesuffix("/v1") + "/v1/messages"
        return UpstreamRequest("POST", url, request_headers(attempt), orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by this channel type")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        if attempt.mode is RelayMode.MESSAGES:
            return body  # the client speaks Anthropic's API: its answer goes back untouched
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(message, dict):
            return body
        return orjson.dumps(convert_response(message, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        if attempt.mode is RelayMode.MESSAGES:
            return AnthropicPassthrough()
        return AnthropicStream(client_wants_usage=client_wants_usage, model=attempt.model)
