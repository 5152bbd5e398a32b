"""Server-sent events between an OpenAI-style upstream and the client.

The relay forwards each `data:` event as soon as its line is complete (never the whole body),
and on the way it keeps what billing needs: the upstream's usage when it sends one, otherwise
every generated piece of text (content, reasoning and tool-call arguments) for counting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

DONE = b"[DONE]"
DONE_FRAME = b"data: [DONE]\n\n"


class LineSplitter:
    """Turns arbitrary byte chunks into complete lines (SSE lines may span TCP reads)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r")

    def flush(self) -> Iterator[bytes]:
        rest, self._buffer = self._buffer.rstrip(b"\r"), b""
        if rest:
            yield rest


@dataclass
class StreamState:
    """What one chat/completions stream told us; `accept` decides what the client gets."""

    client_wants_usage: bool
    usage: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    events: int = 0

    def accept(self, line: bytes) -> bytes | None:
        """The frame to send for one upstream line, or None to drop it."""
        if not line.startswith(b"data:"):
            return None  # event names, comments and keep-alives carry nothing for OpenAI clients
        payload = line[5:].strip()
        if payload == DONE:
            self.saw_done = True
            return DONE_FRAME
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return b"data: " + payload + b"\n\n"
        if not isinstance(event, dict):
            return b"data: " + payload + b"\n\n"
        self.events += 1
        if isinstance(event.get("error"), dict):
            self.upstream_error = event["error"]
            return b"data: " + payload + b"\n\n"
        usage = event.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = usage
        choices = event.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                self._collect_text(choice)
            if not choices:
                # The usage-only chunk we asked for on the client's behalf; Azure's empty ones.
                if usage and self.client_wants_usage:
                    return b"data: " + payload + b"\n\n"
                return None
        return b"data: " + payload + b"\n\n"

    def _collect_text(self, choice: Any) -> None:
        if not isinstance(choice, dict):
            return
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            text = choice.get("text")  # legacy completions stream
            if isinstance(text, str):
                self.generated.append(text)
            return
        for name in ("content", "reasoning_content", "reasoning"):
            value = delta.get(name)
            if isinstance(value, str):
                self.generated.append(value)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for name in ("name", "arguments"):
                    value = function.get(name)
                    if isinstance(value, str):
                        self.generated.append(value)

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)


def completion_frames(completion: dict[str, Any], client_wants_usage: bool) -> bytes:
    """A whole `chat.completion` as the chunks a stream would have carried: the message
    of each choice in one delta, its finish reason, the usage chunk if asked, `[DONE]`."""
    envelope = {
        "id": completion.get("id", ""),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    frames: list[bytes] = []
    for choice in completion.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        delta = {key: value for key, value in message.items() if value is not None}
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                call.setdefault("index", position)
        index = choice.get("index", 0)
        frames.append(_frame({**envelope, "choices": [{"index": index, "delta": delta}]}))
        finish = {"index": index, "delta": {}, "finish_reason": choice.get("finish_reason")}
        frames.append(_frame({**envelope, "choices": [finish]}))
    if client_wants_usage and isinstance(completion.get("usage"), dict):
        frames.append(_frame({**envelope, "choices": [], "usage": completion["usage"]}))
    frames.append(DONE_FRAME)
    return b"".join(frames)


def _frame(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"
