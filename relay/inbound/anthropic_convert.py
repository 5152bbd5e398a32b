"""Anthropic's Messages API in front of OpenAI's chat completions: the pure conversions.

A Messages request becomes a chat payload (the top-level system prompt a system message,
content blocks parts, `tool_use` / `tool_result` blocks tool calls and tool messages); a
`chat.completion` becomes a Message; a stream of `chat.completion.chunk` frames becomes
Anthropic's typed events in Anthropic's order (message_start, content_block_start, ping,
content_block_delta..., content_block_stop, message_delta, message_stop).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.anthropic import event_frame
from relay.errors import RelayError

Block = dict[str, Any]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
# Anthropic's error type for each status it documents; any other status is an api_error.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
ANTHROPIC_ERROR_TYPES = frozenset(ERROR_TYPES.values()) | {"api_error"}
INVALID_REQUEST = "invalid_request_error"
MAX_TOKENS_LIMIT = (2**31 - 1) // 2


def invalid(message: str) -> RelayError:
    return RelayError(400, message, type=INVALID_REQUEST, code=INVALID_REQUEST)


# ---------------------------------------------------------------------- errors


def error_type(status: int, kind: str = "") -> str:
    """Anthropic's type for an error of this status; an upstream's own Anthropic type is kept
    where the status says nothing more precise (a 500 reported as overloaded_error)."""
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return kind if kind in ANTHROPIC_ERROR_TYPES else "api_error"


def error_body(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_event(kind: str, message: str) -> bytes:
    return event_frame(error_body(kind, message))


# ---------------------------------------------------------------------- request


def check_request(body: dict[str, Any], *, needs_max_tokens: bool = True) -> None:
    """The fields Anthropic requires, refused with Anthropic's messages; the rest is checked
    by whoever reads it (the converter below, or Anthropic itself on a native channel)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model: Field required")
    max_tokens = body.get("max_tokens")
    if needs_max_tokens and max_tokens is None:
        raise invalid("max_tokens: Field required")
    if max_tokens is not None and (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise invalid("max_tokens: Input should be a valid integer greater than 0")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages: Field required")


def blocks_of(content: Any) -> list[Block]:
    """Content as a list of blocks: a string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def text_of(content: Any, separator: str = "\n") -> str:
    """The text blocks of some content, joined (system prompts, tool results)."""
    return separator.join(
        str(block.get("text") or "") for block in blocks_of(content) if block.get("type") == "text"
    )


def unsupported_block(kind: Any, where: str) -> RelayError:
    return invalid(f"{where}: content block type {kind!r} cannot be sent to this channel type")


def image_part(block: Block, strict: bool) -> Block | None:
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    url = None
    if source.get("type") == "base64" and source.get("data"):
        url = f"data:{source.get('media_type') or 'image/png'};base64,{source['data']}"
    elif source.get("type") == "url" and isinstance(source.get("url"), str) and source["url"]:
        url = source["url"]
    if url is not None:
        return {"type": "image_url", "image_url": {"url": url}}
    if strict:
        raise invalid(f"image source type {source.get('type')!r} cannot be sent to this channel")
    return None


def simplified(parts: list[Block]) -> str | list[Block]:
    """A lone text part as a plain string: what every OpenAI-compatible upstream takes."""
    if len(parts) == 1 and parts[0]["type"] == "text":
        return str(parts[0]["text"])
    return parts


def tool_message(block: Block, strict: bool) -> tuple[dict[str, Any], list[Block]]:
    """A tool_result block as a tool message, and the images it carried: OpenAI's tool
    messages take text only, so images follow in the user message."""
    content = block.get("content")
    images = []
    for item in blocks_of(content) if isinstance(content, list) else ():
        if item.get("type") == "image":
            part = image_part(item, strict)
            if part is not None:
                images.append(part)
    message = {
        "role": "tool",
        "tool_call_id": str(block.get("tool_use_id") or ""),
        "content": text_of(content),
    }
    return message, images


def user_messages(content: Any, strict: bool, where: str) -> list[dict[str, Any]]:
    """One user turn: its tool results first (they answer the assistant turn before it),
    then whatever else the user said."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[Block] = []
    for block in blocks_of(content):
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text") or "")})
        elif kind == "image":
            part = image_part(block, strict)
            if part is not None:
                parts.append(part)
        elif kind == "tool_result":
            message, images = tool_message(block, strict)
            tools.append(message)
            parts.extend(images)
        elif strict:
            raise unsupported_block(kind, where)
    if parts:
        return [*tools, {"role": "user", "content": simplified(parts)}]
    return tools


def tool_call(block: Block) -> dict[str, Any]:
    arguments = block.get("input") if isinstance(block.get("input"), dict) else {}
    return {
        "id": str(block.get("id") or ""),
        "type": "function",
        "function": {
            "name": str(block.get("name") or ""),
            "arguments": orjson.dumps(arguments).decode(),
        },
    }


def assistant_message(content: Any, strict: bool, where: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks_of(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            calls.append(tool_call(block))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # Claude's signed reasoning means nothing to another model
        elif strict:
            raise unsupported_block(kind, where)
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    return message


def chat_messages(body: dict[str, Any], strict: bool) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = text_of(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(body.get("messages") or ()):
        where = f"messages.{index}"
        role = message.get("role") if isinstance(message, dict) else None
        if role == "user":
            messages.extend(user_messages(message.get("content"), strict, where))
        elif role == "assistant":
            messages.append(assistant_message(message.get("content"), strict, where))
        elif strict:
            raise invalid(f"{where}.role: Input should be 'user' or 'assistant'")
    return messages


def chat_tools(tools: Any, strict: bool) -> list[dict[str, Any]]:
    converted = []
    for index, tool in enumerate(tools if isinstance(tools, list) else ()):
        if not isinstance(tool, dict):
            continue
        if tool.get("type") not in (None, "custom"):
            # Anthropic's server tools (web search, code execution) run at Anthropic only.
            if strict:
                raise invalid(f"tools.{index}: tool type {tool['type']!r} runs on Anthropic only")
            continue
        function: dict[str, Any] = {
            "name": tool.get("name"),
            "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        converted.append({"type": "function", "function": function})
    return converted


def chat_tool_choice(choice: Any) -> str | dict[str, Any] | None:
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "tool" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    return TOOL_CHOICES.get(choice.get("type"))


def to_openai_request(body: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    """A Messages request as an OpenAI chat payload. `strict` refuses what has no OpenAI
    counterpart (documents, server tools); unstrict skips it, for counting tokens."""
    payload: dict[str, Any] = {"model": body.get("model"), "messages": chat_messages(body, strict)}
    if isinstance(body.get("max_tokens"), int):
        payload["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):  # top_k has no OpenAI counterpart
        if body.get(name) is not None:
            payload[name] = body[name]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        payload["stop"] = [stop for stop in stops if isinstance(stop, str)]
    tools = chat_tools(body.get("tools"), strict)
    if tools:
        payload["tools"] = tools
        choice = body.get("tool_choice")
        converted = chat_tool_choice(choice)
        if converted is not None:
            payload["tool_choice"] = converted
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
            payload["parallel_tool_calls"] = False
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        payload["user"] = metadata["user_id"]
    if body.get("stream") is True:
        payload["stream"] = True
    return payload


def thinking_enabled(body: dict[str, Any]) -> bool:
    """Whether the client asked for thinking blocks (and so can take them)."""
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


# ---------------------------------------------------------------------- response


def message_id(completion_id: Any) -> str:
    if isinstance(completion_id, str) and completion_id:
        return "msg_" + completion_id.removeprefix("chatcmpl-")
    return "msg_" + uuid.uuid4().hex


def stop_reason(finish_reason: Any) -> str:
    if isinstance(finish_reason, str):
        return STOP_REASONS.get(finish_reason, "end_turn")
    return "end_turn"


def _count(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def anthropic_usage(usage: Any, prompt: int = 0, completion: int = 0) -> dict[str, int]:
    """OpenAI's usage in Anthropic's terms, the given counts standing in for missing ones.
    OpenAI's prompt tokens include the cached ones; Anthropic reports those apart."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"), prompt)
    details = usage.get("prompt_tokens_details")
    cached = min(_count(details.get("cached_tokens")) if isinstance(details, dict) else 0, prompt)
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": _count(usage.get("completion_tokens"), completion),
    }


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` must be; a model's broken
    JSON becomes an empty object rather than a failed answer."""
    try:
        value = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def plain_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # a few upstreams answer with parts
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "output_text")
        )
    return ""


def to_anthropic_message(
    completion: dict[str, Any], model: str, thinking: bool = False
) -> dict[str, Any]:
    """An OpenAI chat.completion (its first choice) as an Anthropic Message."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    choice = choice if isinstance(choice, dict) else {}
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content: list[Block] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if thinking and isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    calls = [call for call in message.get("tool_calls") or () if isinstance(call, dict)]
    text = plain_text(message.get("content"))
    if text or not calls:
        content.append({"type": "text", "text": text})
    for call in calls:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or f"toolu_{uuid.uuid4().hex}"),
                "name": str(function.get("name") or ""),
                "input": tool_input(function.get("arguments")),
            }
        )
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model") or model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


def message_text(message: dict[str, Any]) -> str:
    """Everything generated in an Anthropic Message, for counting when usage is missing."""
    parts: list[str] = []
    for block in blocks_of(message.get("content")):
        kind = block.get("type")
        if kind == "text":
            parts.append(str(block.get("text") or ""))
        elif kind == "thinking":
            parts.append(str(block.get("thinking") or ""))
        elif kind == "tool_use":
            parts.append(str(block.get("name") or ""))
            parts.append(orjson.dumps(block.get("input") or {}).decode())
    return "".join(parts)


# ---------------------------------------------------------------------- stream


def block_events(index: int, block: Block) -> list[dict[str, Any]]:
    """content_block_start, one delta with the whole content, content_block_stop."""
    kind = block.get("type")
    start: Block
    deltas: list[Block] = []
    if kind == "text":
        start = {"type": "text", "text": ""}
        if block.get("text"):
            deltas.append({"type": "text_delta", "text": block["text"]})
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas.append({"type": "thinking_delta", "thinking": str(block.get("thinking") or "")})
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind in ("tool_use", "server_tool_use"):
        start = {**block, "input": {}}
        arguments = orjson.dumps(block.get("input") or {}).decode()
        deltas.append({"type": "input_json_delta", "partial_json": arguments})
    else:
        start = block  # blocks without deltas (redacted thinking, tool results) come whole
    events: list[dict[str, Any]] = [
        {"type": "content_block_start", "index": index, "content_block": start}
    ]
    events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    events.append({"type": "content_block_stop", "index": index})
    return events


def message_events(message: dict[str, Any]) -> bytes:
    """A whole Message as the events a stream of it would have carried (for an upstream that
    answered a stream request with JSON)."""
    usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 0},
    }
    frames = [event_frame({"type": "message_start", "message": start})]
    for index, block in enumerate(blocks_of(message.get("content"))):
        block_frames = [event_frame(item) for item in block_events(index, block)]
        if index == 0:
            block_frames.insert(1, event_frame({"type": "ping"}))
        frames += block_frames
    delta = {
        "stop_reason": message.get("stop_reason"),
        "stop_sequence": message.get("stop_sequence"),
    }
    frames.append(event_frame({"type": "message_delta", "delta": delta, "usage": usage}))
    frames.append(event_frame({"type": "message_stop"}))
    return b"".join(frames)


def _no_count(text: str) -> int:
    return 0


@dataclass
class ChunkEvents:
    """OpenAI chat.completion.chunk lines in, Anthropic stream events out; one per response.

    Content blocks open as the deltas change kind (thinking, text, each tool call) and close
    before the next one opens; the message ends at `[DONE]` (the usage chunk, which comes
    after the finish reason, must be in by then), or with an `error` event."""

    model: str
    prompt_tokens: int  # the relay's own count: message_start goes out before any usage
    thinking: bool = False
    count: Callable[[str], int] = _no_count  # output tokens when the upstream reports none
    id: str = ""
    started: bool = False
    finished: bool = False
    block: int = -1  # the open block's index, -1 when none is open
    block_kind: str = ""
    blocks: int = 0
    tools: dict[int, int] = field(default_factory=dict)  # tool_calls index -> block index
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:") or self.finished:
            return None
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return self.finish() or None
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict):
            return None
        if isinstance(chunk.get("error"), dict):
            return self.fail(chunk["error"])
        frames = self._start(chunk)
        if isinstance(chunk.get("usage"), dict) and chunk["usage"]:
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            # Anthropic has one answer per message: n > 1 choices beyond the first are dropped.
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                frames += self._choice(choice)
        return frames or None

    def finish(self) -> bytes:
        """The events that end the message; nothing once it has ended."""
        if self.finished:
            return b""
        frames = self._start({})
        if self.blocks == 0:
            frames += self._open({"type": "text", "text": ""})  # Anthropic answers a block
        frames += self._close()
        self.finished = True
        counted = self.count(self.generated_text) if self.usage is None else 0
        usage = anthropic_usage(self.usage, self.prompt_tokens, counted)
        delta = {"stop_reason": self.stop_reason or "end_turn", "stop_sequence": None}
        frames += event_frame({"type": "message_delta", "delta": delta, "usage": usage})
        return frames + event_frame({"type": "message_stop"})

    def fail(self, error: dict[str, Any]) -> bytes:
        """An error reported mid-stream: Anthropic sends an `error` event and stops."""
        self.finished = True
        message = str(error.get("message") or "upstream stream error")
        return error_event(error_type(0, str(error.get("type") or "")), message)

    def _start(self, chunk: dict[str, Any]) -> bytes:
        if self.started:
            return b""
        self.started = True
        self.id = message_id(chunk.get("id"))
        self.model = str(chunk.get("model") or self.model)
        message = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(None, self.prompt_tokens),
        }
        return event_frame({"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
        frames = b""
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self.generated.append(reasoning)  # billed even when the client gets no thinking
            if self.thinking:
                frames += self._delta("thinking", {"type": "thinking_delta", "thinking": reasoning})
        content = delta.get("content")
        if isinstance(content, str) and content:
            self.generated.append(content)
            frames += self._delta("text", {"type": "text_delta", "text": content})
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                frames += self._tool(call)
        if isinstance(choice.get("finish_reason"), str):
            self.stop_reason = stop_reason(choice["finish_reason"])
        return frames

    def _delta(self, kind: str, delta: dict[str, Any]) -> bytes:
        frames = b""
        if self.block_kind != kind:
            start = {"type": "text", "text": ""}
            if kind == "thinking":
                start = {"type": "thinking", "thinking": "", "signature": ""}
            frames += self._open(start)
        return frames + event_frame(
            {"type": "content_block_delta", "index": self.block, "delta": delta}
        )

    def _tool(self, call: dict[str, Any]) -> bytes:
        position = _count(call.get("index"))
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        frames = b""
        index = self.tools.get(position)
        if index is None:
            name = str(function.get("name") or "")
            self.generated.append(name)
            tool_id = str(call.get("id") or f"toolu_{uuid.uuid4().hex}")
            frames += self._open({"type": "tool_use", "id": tool_id, "name": name, "input": {}})
            index = self.tools[position] = self.block
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self.generated.append(arguments)
            delta = {"type": "input_json_delta", "partial_json": arguments}
            frames += event_frame({"type": "content_block_delta", "index": index, "delta": delta})
        return frames

    def _open(self, block: Block) -> bytes:
        frames = self._close()
        self.block, self.block_kind = self.blocks, str(block["type"])
        self.blocks += 1
        frames += event_frame(
            {"type": "content_block_start", "index": self.block, "content_block": block}
        )
        if self.block == 0:
            frames += event_frame({"type": "ping"})  # where Anthropic sends its first keep-alive
        return frames

    def _close(self) -> bytes:
        if self.block < 0:
            return b""
        frame = event_frame({"type": "content_block_stop", "index": self.block})
        self.block, self.block_kind = -1, ""
        return frame
