"""Ollama's native API (`/api/chat`, `/api/embed`), converted to and from OpenAI's.

Ollama streams newline-delimited JSON (one whole object per line, no SSE framing) and ends
with an object that has `done: true`, the finish reason and the token counts. Images go as
base64 strings beside the message text; the gateway never fetches remote images for it.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay import images
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import client_payload, encode_embedding
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME

FINISH_REASONS = {"stop": "stop", "length": "length"}
SYSTEM_ROLES = frozenset({"system", "developer"})
# `data:<type>[;param=value...];base64,<data>`
DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[^;,]*)*;base64,(?P<data>.*)$", re.DOTALL)
# OpenAI sampling fields that Ollama reads from `options` under the same name.
SHARED_OPTIONS = ("seed", "frequency_penalty", "presence_penalty", "top_k", "num_ctx")


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def unsupported_content(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_content")


# ---------------------------------------------------------------------- request


def image_data(part: dict[str, Any]) -> str:
    """The base64 data of an image part: Ollama wants the bytes, so http(s) images are
    fetched by `prepare` (through the SSRF guard, as One API downloads them)."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise RelayError(400, "image_url part without a url", code="invalid_image_url")
    match = DATA_URL.match(url)
    if match is not None:
        return match["data"]
    fetched = images.inlined(url)
    if fetched is None:
        raise RelayError(
            400,
            "channel type Ollama takes images as base64 data: URLs, or http(s) URLs "
            "fetched before the request is built; this one was not fetched",
            code="invalid_image_url",
        )
    return fetched.data


def text_and_images(content: Any) -> tuple[str, list[str]]:
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        return str(content), []
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
            continue
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text") or ""))
        elif kind == "image_url":
            images.append(image_data(part))
        else:
            raise unsupported_content(
                f"content part type {kind!r} is not supported by channel type Ollama"
            )
    return "".join(texts), images


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Ollama wants an object; a model's broken arguments echoed back must not fail the turn."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def assistant_calls(message: dict[str, Any], call_names: dict[str, str]) -> list[dict[str, Any]]:
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        name = str(function["name"])
        call_names[str(call.get("id") or "")] = name
        calls.append(
            {"function": {"name": name, "arguments": parse_arguments(function.get("arguments"))}}
        )
    return calls


def convert_message(message: dict[str, Any], call_names: dict[str, str]) -> dict[str, Any]:
    role = message.get("role")
    if role in SYSTEM_ROLES:
        role = "system"
    elif role in ("tool", "function"):
        role = "tool"
    elif role != "assistant":
        role = "user"
    text, images = text_and_images(message.get("content"))
    converted: dict[str, Any] = {"role": role, "content": text}
    if images:
        converted["images"] = images
    if role == "assistant":
        calls = assistant_calls(message, call_names)
        if calls:
            converted["tool_calls"] = calls
    elif role == "tool":
        name = call_names.get(str(message.get("tool_call_id") or "")) or message.get("name")
        if name:
            converted["tool_name"] = str(name)
    return converted


def convert_tools(payload: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for tool in payload.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            entry = {"name": function["name"], "parameters": function.get("parameters") or {}}
            if function.get("description"):
                entry["description"] = function["description"]
            tools.append({"type": "function", "function": entry})
    return tools


def stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [item for item in stop if isinstance(item, str) and item]
    return []


def convert_options(payload: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    temperature = payload.get("temperature")
    if isinstance(temperature, int | float):
        options["temperature"] = max(float(temperature), 0.0)
    top_p = payload.get("top_p")
    if isinstance(top_p, int | float):
        options["top_p"] = min(max(float(top_p), 0.0), 1.0)
    for name in SHARED_OPTIONS:
        if isinstance(payload.get(name), int | float) and not isinstance(payload[name], bool):
            options[name] = payload[name]
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        options["num_predict"] = max_tokens
    stops = stop_sequences(payload.get("stop"))
    if stops:
        options["stop"] = stops
    return options


def response_format(value: Any) -> Any:
    """JSON mode is `format: "json"`; structured output is `format: <the JSON schema>`."""
    if not isinstance(value, dict):
        return None
    if value.get("type") == "json_object":
        return "json"
    schema = value.get("json_schema")
    if value.get("type") == "json_schema" and isinstance(schema, dict):
        return schema.get("schema") if isinstance(schema.get("schema"), dict) else "json"
    return None


def convert_request(payload: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """An OpenAI chat request as an Ollama /api/chat request. `stream` is always sent:
    Ollama streams unless told not to."""
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise unsupported("n > 1 is not supported by channel type Ollama")
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    call_names: dict[str, str] = {}
    request: dict[str, Any] = {
        "model": model,
        "messages": [
            convert_message(message, call_names)
            for message in messages
            if isinstance(message, dict)
        ],
        "stream": stream,
    }
    tools = convert_tools(payload)
    if tools and payload.get("tool_choice") != "none":
        request["tools"] = tools
    options = convert_options(payload)
    if options:
        request["options"] = options
    output_format = response_format(payload.get("response_format"))
    if output_format is not None:
        request["format"] = output_format
    return request


def embedding_inputs(value: Any) -> str | list[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    raise unsupported_content("channel type Ollama embeds strings only, not token arrays")


def convert_embedding_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    request: dict[str, Any] = {"model": model, "input": embedding_inputs(payload.get("input"))}
    dimensions = payload.get("dimensions")
    if isinstance(dimensions, int) and dimensions > 0:
        request["dimensions"] = dimensions
    return request


# ---------------------------------------------------------------------- response


def completion_id() -> str:
    return f"chatcmpl-{secrets.token_hex(12)}"


def openai_tool_calls(calls: Any) -> list[dict[str, Any]]:
    converted = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        converted.append(
            {
                "id": str(call.get("id") or f"call_{secrets.token_hex(12)}"),
                "type": "function",
                "function": {
                    "name": str(function.get("name") or ""),
                    "arguments": arguments
                    if isinstance(arguments, str)
                    else orjson.dumps(arguments or {}).decode(),
                },
            }
        )
    return converted


def finish_reason(done_reason: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(done_reason, "stop") if isinstance(done_reason, str) else "stop"


def openai_usage(data: dict[str, Any]) -> dict[str, int] | None:
    """Ollama's counts; a prompt it had cached leaves `prompt_eval_count` out (zero)."""
    prompt, completion = data.get("prompt_eval_count"), data.get("eval_count")
    if not isinstance(prompt, int) and not isinstance(completion, int):
        return None
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def convert_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """An Ollama chat response as an OpenAI chat.completion."""
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    calls = openai_tool_calls(message.get("tool_calls"))
    content = str(message.get("content") or "")
    out: dict[str, Any] = {"role": "assistant", "content": content or (None if calls else "")}
    if isinstance(message.get("thinking"), str) and message["thinking"]:
        out["reasoning_content"] = message["thinking"]
    if calls:
        out["tool_calls"] = calls
    result: dict[str, Any] = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": out,
                "logprobs": None,
                "finish_reason": finish_reason(data.get("done_reason"), bool(calls)),
            }
        ],
    }
    usage = openai_usage(data)
    if usage is not None:
        result["usage"] = usage
    return result


def convert_embedding_response(
    data: dict[str, Any], model: str, encoding_format: Any = None
) -> dict[str, Any]:
    vectors = [v if isinstance(v, list) else [] for v in data.get("embeddings") or ()]
    items = [
        {"object": "embedding", "index": index, "embedding": encode_embedding(v, encoding_format)}
        for index, v in enumerate(vectors)
    ]
    result: dict[str, Any] = {"object": "list", "data": items, "model": model}
    prompt = data.get("prompt_eval_count")
    if isinstance(prompt, int):
        result["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
    return result


# ---------------------------------------------------------------------- stream


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class OllamaStream:
    """Ollama's NDJSON objects in, OpenAI chunks out; one instance per response."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    started: bool = False
    tool_calls: int = 0

    def accept(self, line: bytes) -> bytes | None:
        line = line.strip()
        if line.startswith(b"data:"):  # tolerate a proxy that re-framed the lines as SSE
            line = line[5:].strip()
        if not line or self.saw_done or self.upstream_error is not None:
            return None
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict):
            return None
        if event.get("error"):
            return self._error(event["error"])
        frames = self._delta(event)
        if event.get("done") is True:
            frames += self._finish(event)
        return frames or None

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self.started:
            self.started = True
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(self._envelope([choice]))

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _delta(self, event: dict[str, Any]) -> bytes:
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        delta: dict[str, Any] = {}
        for source, target in (("content", "content"), ("thinking", "reasoning_content")):
            text = message.get(source)
            if isinstance(text, str) and text:
                delta[target] = text
                self.generated.append(text)
        calls = openai_tool_calls(message.get("tool_calls"))
        if calls:
            # Ollama sends each call whole: one OpenAI tool call each, numbered on.
            delta["tool_calls"] = [
                {"index": self.tool_calls + i, **call} for i, call in enumerate(calls)
            ]
            self.tool_calls += len(calls)
            for call in calls:
                self.generated += [call["function"]["name"], call["function"]["arguments"]]
        return self._chunk(delta) if delta or not self.started else b""

    def _finish(self, event: dict[str, Any]) -> bytes:
        self.usage = openai_usage(event)
        frames = self._chunk({}, finish_reason(event.get("done_reason"), self.tool_calls > 0))
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        self.saw_done = True
        return frames + DONE_FRAME

    def _error(self, error: Any) -> bytes:
        message = error.get("message") if isinstance(error, dict) else error
        self.upstream_error = {
            "message": str(message or "upstream stream error"),
            "type": UPSTREAM_ERROR,
            "param": None,
            "code": None,
        }
        return sse({"error": self.upstream_error})


# ---------------------------------------------------------------------- adaptor


def request_url(attempt: Attempt, path: str) -> str:
    # An `/v1` left from Ollama's OpenAI-compatible endpoint is not part of the native API.
    return base_url(attempt).removesuffix("/v1") + path


def request_headers(attempt: Attempt) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": "application/x-ndjson" if attempt.stream else "application/json",
    }
    if attempt.channel.key:  # Ollama has no auth; a proxy in front of it may
        headers["authorization"] = f"Bearer {attempt.channel.key}"
    return headers


class OllamaAdaptor(Adaptor):
    async def prepare(self, attempt: Attempt) -> None:
        if attempt.mode is RelayMode.CHAT:
            await images.prefetch_chat_images(attempt.request)

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is RelayMode.CHAT:
            with images.inlining(attempt.request):
                payload = convert_request(body.payload, attempt.model, attempt.stream)
            path = "/api/chat"
        elif attempt.mode is RelayMode.EMBEDDINGS:
            payload = convert_embedding_request(body.payload, attempt.model)
            path = "/api/embed"
        else:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Ollama"
            )
        return UpstreamRequest(
            "POST", request_url(attempt, path), request_headers(attempt), orjson.dumps(payload)
        )

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Ollama")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        if isinstance(data.get("error"), str) and data["error"]:
            # Ollama's error object is a bare string; one that came with a 200 is still one.
            raise UpstreamFailure(
                RelayError(500, data["error"], type=UPSTREAM_ERROR, code="ollama_error"),
                retryable=True,
            )
        if attempt.mode is RelayMode.EMBEDDINGS:
            encoding = client_payload(attempt).get("encoding_format")
            return orjson.dumps(convert_embedding_response(data, attempt.model, encoding))
        return orjson.dumps(convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return OllamaStream(client_wants_usage=client_wants_usage, model=attempt.model)
