from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.gemini_upstream import gemini_vector
from tests.fakes.server import FakeServer, RecordedRequest, json_response
from tests.fakes.vertex_upstream import split_text

# A fake Ollama server (native API), over real HTTP.
#
#     with FakeOllama() as fake:
#         ...  # an Ollama channel with fake.base_url
#         assert fake.last_request.json["options"]["num_predict"] == 20
#
# Routes: POST /api/chat and POST /api/embed. Like Ollama it streams unless the body says
# `"stream": false`, and a stream is newline-delimited JSON (`application/x-ndjson`), the
# last object `done: true` with `done_reason`, `prompt_eval_count` and `eval_count`. It is
# as strict as Ollama where a gateway can go wrong: unknown models (404 "not found, try
# pulling it first"), message roles, string contents, base64 images, object tool-call
# arguments, option types. Errors are `{"error": "..."}`.

__all__ = ["CHAT_MODELS", "EMBEDDING_MODELS", "SCENARIOS", "FakeOllama"]

CHAT_MODELS = frozenset({"llama3:latest", "llava:latest", "qwen:7b"})
EMBEDDING_MODELS = frozenset({"nomic-embed-text:latest", "all-minilm:latest"})
ERROR_SCENARIOS = frozenset({"error_500"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "max_tokens", "thinking", "error_mid_stream"}
ROLES = frozenset({"system", "user", "assistant", "tool"})
FLOAT_OPTIONS = frozenset({"temperature", "top_p", "frequency_penalty", "presence_penalty"})
INT_OPTIONS = frozenset({"top_k", "num_predict", "seed", "num_ctx"})


class Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _check_message(message: Any, i: int) -> None:
    if not isinstance(message, dict):
        raise Invalid(f"messages[{i}]: cannot unmarshal into Go value of type api.Message")
    if message.get("role") not in ROLES:
        raise Invalid(f"messages[{i}]: invalid role {message.get('role')!r}")
    if not isinstance(message.get("content", ""), str):
        raise Invalid(
            "json: cannot unmarshal array into Go struct field Message.messages.content "
            "of type string"
        )
    for image in message.get("images") or ():
        try:
            base64.b64decode(image, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise Invalid("illegal base64 data at input byte 4") from None
    for call in message.get("tool_calls") or ():
        arguments = (call.get("function") or {}).get("arguments")
        if not isinstance(arguments, dict):
            raise Invalid(
                "json: cannot unmarshal string into Go struct field "
                "ToolCallFunction.messages.tool_calls.function.arguments of type map[string]any"
            )


def validate_chat(payload: dict[str, Any]) -> None:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        raise Invalid("messages must be a list")
    for i, message in enumerate(messages):
        _check_message(message, i)
    options = payload.get("options") or {}
    if not isinstance(options, dict):
        raise Invalid("options must be an object")
    for name, value in options.items():
        if name in FLOAT_OPTIONS and not isinstance(value, int | float):
            raise Invalid(f'option "{name}" must be of type float')
        if name in INT_OPTIONS and not isinstance(value, int):
            raise Invalid(f'option "{name}" must be of type integer')
        if name == "stop" and not (
            isinstance(value, list) and all(isinstance(s, str) for s in value)
        ):
            raise Invalid('option "stop" must be of type array')
    fmt = payload.get("format")
    if fmt is not None and fmt != "json" and not isinstance(fmt, dict):
        raise Invalid(f"invalid format: {fmt!r}")


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class FakeOllama(FakeServer[RecordedRequest]):
    scenarios = SCENARIOS
    thread_name = "fake-ollama"

    def __init__(
        self,
        reply: str = "Hello from fake Ollama.",
        prompt_tokens: int = 13,
        completion_tokens: int = 9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.thinking = "The user says hello."
        self.function_args: dict[str, Any] = {"location": "Paris"}
        self.embedding_dimensions = 8

    @staticmethod
    def _error(message: str, status: int) -> web.Response:
        return json_response({"error": message}, status)

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if recorded.method != "POST" or recorded.path not in ("/api/chat", "/api/embed"):
            return web.Response(status=404, text="404 page not found")
        payload = recorded.json
        if not isinstance(payload, dict):
            return self._error("invalid request body", 400)
        model = payload.get("model")
        known = CHAT_MODELS if recorded.path == "/api/chat" else EMBEDDING_MODELS
        if model not in known:
            return self._error(f'model "{model}" not found, try pulling it first', 404)
        if scenario == "error_500":
            return self._error("llama runner process has terminated: exit status 2", 500)
        if recorded.path == "/api/embed":
            return self._embed(payload)
        try:
            validate_chat(payload)
        except Invalid as error:
            return self._error(str(error), error.status)
        if payload.get("stream", True) is False:
            return json_response(self._final(payload, scenario), 200, "application/json")
        return await self._stream(request, payload, scenario)

    # ------------------------------------------------------------------ chat

    def _tool(self, payload: dict[str, Any]) -> str | None:
        tools = payload.get("tools") or []
        messages = payload["messages"]
        if not tools or (messages and messages[-1].get("role") == "tool"):
            return None
        return str(tools[0]["function"]["name"])

    def _answer(self, payload: dict[str, Any], scenario: str) -> tuple[str, str]:
        images = sum(len(m.get("images") or ()) for m in payload["messages"])
        text = self.reply + (f" I see {images} image(s)." if images else "")
        if scenario == "max_tokens":
            return text[: len(text) // 2], "length"
        return text, "stop"

    def _final(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": ""}
        tool = self._tool(payload)
        if tool is not None:
            message["tool_calls"] = [{"function": {"name": tool, "arguments": self.function_args}}]
            reason = "stop"
        else:
            message["content"], reason = self._answer(payload, scenario)
        if scenario == "thinking":
            message["thinking"] = self.thinking
        return {
            "model": payload["model"],
            "created_at": _now(),
            "message": message,
            "done_reason": reason,
            "done": True,
            "total_duration": 4883583458,
            "load_duration": 1334875,
            "prompt_eval_count": self.prompt_tokens,
            "prompt_eval_duration": 342546000,
            "eval_count": self.completion_tokens,
            "eval_duration": 4535599000,
        }

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], scenario: str
    ) -> web.StreamResponse:
        final = self._final(payload, scenario)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        model = payload["model"]
        chunks: list[dict[str, Any]] = []
        if scenario == "thinking":
            chunks.append({"role": "assistant", "content": "", "thinking": self.thinking})
        if final["message"].get("tool_calls"):
            chunks.append(
                {"role": "assistant", "content": "", "tool_calls": final["message"]["tool_calls"]}
            )
        else:
            chunks += [
                {"role": "assistant", "content": piece}
                for piece in split_text(final["message"]["content"])
            ]
        for i, message in enumerate(chunks):
            if scenario == "error_mid_stream" and i == 2:
                await response.write(
                    b'{"error":"an error was encountered while running the model"}\n'
                )
                await response.write_eof()
                return response
            line = {"model": model, "created_at": _now(), "message": message, "done": False}
            await response.write(json.dumps(line).encode() + b"\n")
        done = {**final, "message": {"role": "assistant", "content": ""}}
        await response.write(json.dumps(done).encode() + b"\n")
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ embeddings

    def _embed(self, payload: dict[str, Any]) -> web.Response:
        value = payload.get("input")
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return self._error("invalid input type", 400)
        size = payload.get("dimensions") or self.embedding_dimensions
        return json_response(
            {
                "model": payload["model"],
                "embeddings": [gemini_vector(text, size) for text in texts],
                "total_duration": 14143917,
                "load_duration": 1019500,
                "prompt_eval_count": sum(len(text.split()) for text in texts),
            }
        )
