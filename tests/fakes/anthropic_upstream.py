from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake Anthropic upstream: a real HTTP server speaking the Messages API wire format.
#
#     with FakeAnthropic(api_key="sk-ant-test") as fake:
#         fake.scenario = "thinking"
#         ...  # point the gateway at fake.base_url
#         assert fake.last_request.json["max_tokens"] == 4096
#
# It is as strict as api.anthropic.com where a converting gateway can go wrong: the
# x-api-key and anthropic-version headers, a required max_tokens, strictly alternating
# user/assistant turns, non-empty content, well-formed image sources, and tool_result
# blocks that answer a tool_use of the turn before. Like the OpenAI fake it runs its own
# event loop in a daemon thread, so synchronous and async tests can both use it.

__all__ = ["ERROR_SCENARIOS", "SCENARIOS", "FakeAnthropic", "RecordedRequest"]

ANTHROPIC_VERSION = "2023-06-01"

# Scenarios that answer with an HTTP error once the request passed validation.
ERROR_SCENARIOS = frozenset({"error_429", "error_500", "error_529"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "thinking", "max_tokens", "error_mid_stream"}

_ID_ALPHABET = string.ascii_letters + string.digits
_ROLES = ("user", "assistant")
_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


class InvalidRequest(Exception):
    """A request Anthropic would refuse with 400 invalid_request_error."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: dict[str, Any] | None = None


def _rand_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _error_body(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


# ---------------------------------------------------------------------- validation


def _check_source(source: Any, where: str) -> None:
    if not isinstance(source, dict):
        raise InvalidRequest(f"{where}.source: Field required")
    kind = source.get("type")
    if kind == "base64":
        if source.get("media_type") not in _IMAGE_MEDIA_TYPES:
            raise InvalidRequest(
                f"{where}.source.base64.media_type: Input should be 'image/jpeg', "
                "'image/png', 'image/gif' or 'image/webp'"
            )
        if not isinstance(source.get("data"), str) or not source["data"]:
            raise InvalidRequest(f"{where}.source.base64.data: Field required")
    elif kind == "url":
        if not isinstance(source.get("url"), str) or not source["url"]:
            raise InvalidRequest(f"{where}.source.url.url: Field required")
    else:
        raise InvalidRequest(f"{where}.source: Input tag {kind!r} found using 'type' is invalid")


def _check_block(block: Any, role: str, where: str) -> None:
    if not isinstance(block, dict):
        raise InvalidRequest(f"{where}: Input should be a valid dictionary or object")
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise InvalidRequest(f"{where}: text content blocks must be non-empty")
    elif kind == "image":
        _check_source(block.get("source"), where)
    elif kind == "tool_use" and role == "assistant":
        if not block.get("id") or not block.get("name") or not isinstance(block.get("input"), dict):
            raise InvalidRequest(f"{where}: tool_use blocks need id, name and an object input")
    elif kind == "tool_result" and role == "user":
        if not block.get("tool_use_id"):
            raise InvalidRequest(f"{where}.tool_use_id: Field required")
    else:
        raise InvalidRequest(f"{where}: unexpected content block type {kind!r} for role {role}")


def _tool_use_ids(message: dict[str, Any]) -> set[str]:
    content = message.get("content")
    if not isinstance(content, list):
        return set()
    return {b["id"] for b in content if isinstance(b, dict) and b.get("type") == "tool_use"}


def _check_tool_results(message: dict[str, Any], previous: dict[str, Any] | None, i: int) -> None:
    content = message.get("content")
    if not isinstance(content, list):
        return
    offered = _tool_use_ids(previous) if previous is not None else set()
    for block in content:
        is_result = isinstance(block, dict) and block.get("type") == "tool_result"
        if is_result and block["tool_use_id"] not in offered:
            raise InvalidRequest(
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` "
                "blocks. Each `tool_result` block must have a corresponding `tool_use` "
                "block in the previous message."
            )


def _check_message(message: Any, i: int, previous: dict[str, Any] | None) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"messages.{i}: Input should be a valid dictionary")
    role = message.get("role")
    if role not in _ROLES:
        raise InvalidRequest(
            f'messages: Unexpected role "{role}". The Messages API accepts a top-level '
            '`system` parameter, not "system" as an input message role.'
            if role == "system"
            else f"messages.{i}.role: Input should be 'user' or 'assistant'"
        )
    if previous is not None and previous.get("role") == role:
        raise InvalidRequest(
            'messages: roles must alternate between "user" and "assistant", but found '
            f'multiple "{role}" roles in a row'
        )
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            raise InvalidRequest(f"messages.{i}: all messages must have non-empty content")
        return
    if not isinstance(content, list) or not content:
        raise InvalidRequest(f"messages.{i}: all messages must have non-empty content")
    for j, block in enumerate(content):
        _check_block(block, role, f"messages.{i}.content.{j}")
    if role == "user":
        _check_tool_results(message, previous, i)


def validate(payload: dict[str, Any]) -> None:
    """The checks a converting gateway most easily fails, with Anthropic's messages."""
    if not payload.get("model"):
        raise InvalidRequest("model: Field required")
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: Input should be a valid integer greater than 0")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: Field required")
    previous: dict[str, Any] | None = None
    for i, message in enumerate(messages):
        _check_message(message, i, previous)
        previous = message
    system = payload.get("system")
    if system is not None and not isinstance(system, str | list):
        raise InvalidRequest("system: Input should be a valid string or list of text blocks")
    for i, tool in enumerate(payload.get("tools") or ()):
        if not isinstance(tool, dict) or not tool.get("name") or "input_schema" not in tool:
            raise InvalidRequest(f"tools.{i}: tools need a name and an input_schema")
    stops = payload.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        raise InvalidRequest("stop_sequences: Input should be a valid list of strings")


# ---------------------------------------------------------------------- server


class FakeAnthropic(FakeServer[RecordedRequest]):
    """A local Anthropic Messages API with switchable scenarios.

    Public attributes may be changed from the test thread at any time; the server reads
    them when the next request arrives."""

    scenarios = SCENARIOS
    thread_name = "fake-anthropic"

    def __init__(
        self,
        api_key: str | None = "sk-ant-test",
        reply: str = "Hello from fake Claude.",
        input_tokens: int = 13,
        output_tokens: int = 9,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.api_key = api_key
        self.reply = reply
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cache_creation_input_tokens = 0
        self.cache_read_input_tokens = 0
        self.thinking = "The user greets me; I should greet back."
        self.tool_preamble = "Let me check that."
        self.tool_input: dict[str, Any] = {"location": "Paris", "unit": "celsius"}
        self.retry_after = 2

    # ------------------------------------------------------------------ request entry

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if (request.method, request.path.rstrip("/")) != ("POST", "/v1/messages"):
            return self._error(404, "not_found_error", "Not Found")
        denied = self._check_headers(recorded)
        if denied is not None:
            return denied
        if recorded.json is None:
            return self._error(400, "invalid_request_error", "There was an issue with the JSON")
        try:
            validate(recorded.json)
        except InvalidRequest as error:
            return self._error(400, "invalid_request_error", str(error))
        if scenario in ERROR_SCENARIOS:
            return self._scenario_error(scenario)
        if recorded.json.get("stream") is True:
            return await self._stream(request, recorded.json, scenario)
        return self._json(self._message(recorded.json, scenario))

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        return RecordedRequest(
            request.method, request.path, lower_headers(request), body, json_object(body)
        )

    def _check_headers(self, recorded: RecordedRequest) -> web.Response | None:
        key = recorded.headers.get("x-api-key")
        if self.api_key is not None and not key:
            return self._error(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            return self._error(401, "authentication_error", "invalid x-api-key")
        if not recorded.headers.get("anthropic-version"):
            return self._error(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        return None

    # ------------------------------------------------------------------ responses

    def _headers(self, **extra: str) -> dict[str, str]:
        return {"request-id": _rand_id("req_"), "anthropic-organization-id": "org-fake", **extra}

    def _json(self, data: Any, status: int = 200, **headers: str) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(data).encode(),
            headers=self._headers(**{"Content-Type": "application/json", **headers}),
        )

    def _error(self, status: int, type_: str, message: str, **headers: str) -> web.Response:
        return self._json(_error_body(type_, message), status, **headers)

    def _scenario_error(self, scenario: str) -> web.Response:
        if scenario == "error_429":
            return self._error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                **{"retry-after": str(self.retry_after)},
            )
        if scenario == "error_529":
            return self._error(529, "overloaded_error", "Overloaded")
        return self._error(500, "api_error", "Internal server error")

    def _usage(self, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "output_tokens": output_tokens,
        }

    def _tool_name(self, payload: dict[str, Any]) -> str | None:
        """The tool Claude calls: the forced one, else the first, unless tools are off."""
        tools = payload.get("tools")
        choice = payload.get("tool_choice") or {}
        if not tools or choice.get("type") == "none":
            return None
        if choice.get("type") == "tool":
            return str(choice["name"])
        return str(tools[0]["name"])

    def _answers_tool_result(self, payload: dict[str, Any]) -> bool:
        last = payload["messages"][-1]
        content = last.get("content")
        return isinstance(content, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in content
        )

    def _content(self, payload: dict[str, Any], scenario: str) -> tuple[list[Any], str, Any]:
        """(content blocks, stop_reason, stop_sequence) of the answer to `payload`."""
        blocks: list[dict[str, Any]] = []
        if scenario == "thinking":
            signature = _rand_id("sig", 40)
            blocks.append({"type": "thinking", "thinking": self.thinking, "signature": signature})
        tool = None if self._answers_tool_result(payload) else self._tool_name(payload)
        if tool is not None:
            blocks.append({"type": "text", "text": self.tool_preamble})
            call = {"type": "tool_use", "id": _rand_id("toolu_"), "name": tool}
            blocks.append({**call, "input": self.tool_input})
            return blocks, "tool_use", None
        text, stop_reason, stop_sequence = self.reply, "end_turn", None
        for sequence in payload.get("stop_sequences") or ():
            if sequence in text:
                text = text[: text.index(sequence)]
                stop_reason, stop_sequence = "stop_sequence", sequence
                break
        if scenario == "max_tokens":
            text, stop_reason = text[: len(text) // 2], "max_tokens"
        blocks.append({"type": "text", "text": text})
        return blocks, stop_reason, stop_sequence

    def _message(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        content, stop_reason, stop_sequence = self._content(payload, scenario)
        return {
            "id": _rand_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": payload["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": self._usage(self.output_tokens),
        }

    # ------------------------------------------------------------------ streaming

    def _block_events(self, index: int, block: dict[str, Any]) -> list[tuple[str, Any]]:
        """content_block_start, its deltas and content_block_stop for one block."""
        kind = block["type"]
        if kind == "text":
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _split(block["text"])]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": ""}
            deltas = [{"type": "thinking_delta", "thinking": p} for p in _split(block["thinking"])]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            arguments = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": ""}]
            deltas += [{"type": "input_json_delta", "partial_json": p} for p in _split(arguments)]
        events: list[tuple[str, Any]] = [
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            ),
        ]
        if index == 0:
            events.append(("ping", {"type": "ping"}))  # Anthropic's keep-alive, early on
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        return events

    def _stream_events(self, payload: dict[str, Any], scenario: str) -> list[tuple[str, Any]]:
        message = self._message(payload, scenario)
        start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
        start["usage"] = self._usage(1)
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for index, block in enumerate(message["content"]):
            events += self._block_events(index, block)
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
        usage = {"output_tokens": self.output_tokens}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], scenario: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers=self._headers(**{"Content-Type": "text/event-stream; charset=utf-8"}),
        )
        await response.prepare(request)
        deltas = 0
        for name, data in self._stream_events(payload, scenario):
            await response.write(_event(name, data))
            deltas += name == "content_block_delta"
            if scenario == "error_mid_stream" and deltas == 2:
                # Anthropic reports failures after the 200 as an `error` event, then stops.
                await response.write(_event("error", _error_body("overloaded_error", "Overloaded")))
                break
        await response.write_eof()
        return response
