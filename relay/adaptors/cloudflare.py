"""Cloudflare Workers AI through its native `ai/run/{model}` endpoint.

`POST {base}/client/v4/accounts/{config.user_id}/ai/run/{model}` (or `{base}/{model}` when
the base URL is an AI Gateway's `.../workers-ai` root), Bearer token. The native endpoint is
used rather than the OpenAI-compatible `/ai/v1/chat/completions` One API calls: it serves
every model (the compatible one only the newer text models), returns the upstream's own
token counts in `result.usage` on chat, and lets the relay keep the parameters inside the
ranges Workers AI validates (temperature ≤ 5, penalties ≥ 0) instead of failing on them.

Chat becomes `{messages, stream, max_tokens, temperature, top_p, ...}` and the answer
`{result: {response, tool_calls, usage}, success, errors}`; streams are `data:
{"response": "..."}` events ending in `data: [DONE]`. Completions send `prompt`. Embedding
models (`@cf/baai/bge-*` and the like) take `{text: [...]}` and answer
`{result: {shape, data}}`. Errors are `{success: false, errors: [{code, message}]}`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import client_payload, encode_embedding
from relay.adaptors.coze import completion_id, error_event, parse_json_object, sse, unsupported
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure, failure_from_exception, failure_from_response
from relay.modes import RelayMode
from relay.streaming import DONE, DONE_FRAME
from relay.upstream import get_client, is_retryable_status

GATEWAY_PREFIX = "https://gateway.ai.cloudflare.com"
GATEWAY_SUFFIX = "/workers-ai"
# Workers AI's validated ranges (model schemas, e.g. @cf/meta/llama-3.1-8b-instruct).
RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 5.0),
    "top_p": (0.0, 2.0),
    "frequency_penalty": (0.0, 2.0),
    "presence_penalty": (0.0, 2.0),
    "repetition_penalty": (0.0, 2.0),
}
TOP_K_RANGE = (1, 50)
SEED_RANGE = (1, 9_999_999_999)
MAX_EMBEDDING_BATCH = 100  # `text` items per request

Json = dict[str, Any]


# ---------------------------------------------------------------------- sending


def upstream_error_message(data: Any) -> tuple[str, Any] | None:
    """(message, code) of a Cloudflare v4 error envelope."""
    if not isinstance(data, dict):
        return None
    errors = data.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict) and error.get("message"):
                return str(error["message"]), error.get("code")
    return None


async def send_reading_errors(
    call: UpstreamRequest, read_error: Callable[[Any], tuple[str, Any] | None]
) -> httpx.Response:
    """`relay.transport.send_upstream`, but a failed answer's message is read the upstream's
    way (`error_from_response` knows OpenAI's and a few common shapes, not every vendor's)."""
    client = get_client()
    request = client.build_request(
        call.method, call.url, headers=call.headers, content=call.content
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    if response.status_code in (200, 201):
        return response
    try:
        body = await response.aread()
    except httpx.HTTPError:
        body = b""
    finally:
        await response.aclose()
    failure = failure_from_response(response.status_code, body, response.headers)
    found = read_error(parse_json_object(body))
    if found is not None:
        failure.error.message, code = found
        if code is not None:
            failure.error.code = code
    raise failure


# ---------------------------------------------------------------------- request


def clamp(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return min(max(float(value), low), high)


def is_gateway(base: str) -> bool:
    return base.startswith(GATEWAY_PREFIX) and base.endswith(GATEWAY_SUFFIX)


def request_url(attempt: Attempt) -> str:
    base = base_url(attempt)
    if is_gateway(base):
        return f"{base}/{attempt.model}"
    account = attempt.channel.config.get("user_id")
    if not isinstance(account, str) or not account:
        # The channel is misconfigured, not the request: let another channel try.
        raise UpstreamFailure(
            RelayError(
                500,
                "the Cloudflare channel has no account id (config user_id)",
                code="channel_config_missing",
            ),
            retryable=True,
            from_upstream=False,
        )
    return f"{base}/client/v4/accounts/{account}/ai/run/{attempt.model}"


def message_content(content: Any) -> str | list[Json]:
    """A string, as every Workers AI text model takes; parts only when there are images
    (the vision models take OpenAI's `image_url` parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    parts = [{"type": "text", "text": p} if isinstance(p, str) else p for p in content]
    kept = [p for p in parts if isinstance(p, dict) and p.get("type") in ("text", "image_url")]
    if any(p["type"] == "image_url" for p in kept):
        return [{k: v for k, v in p.items() if k in ("type", "text", "image_url")} for p in kept]
    return "\n".join(str(p.get("text") or "") for p in kept)


def convert_message(message: Json) -> Json:
    role = message.get("role")
    converted: Json = {
        "role": "system" if role == "developer" else role,
        "content": message_content(message.get("content")),
    }
    if role == "assistant" and isinstance(message.get("tool_calls"), list):
        converted["tool_calls"] = message["tool_calls"]
    if role == "tool":
        for name in ("tool_call_id", "name"):
            if message.get(name):
                converted[name] = message[name]
    return converted


def response_format(value: Any) -> Json | None:
    """OpenAI's JSON modes in Workers AI's shape (`json_schema` holds the schema itself)."""
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = value.get("json_schema")
        inner = schema.get("schema") if isinstance(schema, dict) else None
        return {"type": "json_schema", "json_schema": inner if inner is not None else schema}
    return None  # "text" is the default


def sampling(payload: Json) -> Json:
    out: Json = {}
    for name, (low, high) in RANGES.items():
        value = clamp(payload.get(name), low, high)
        if value is not None:
            out[name] = value
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        out["max_tokens"] = max_tokens
    top_k = clamp(payload.get("top_k"), *TOP_K_RANGE)
    if top_k is not None:
        out["top_k"] = int(top_k)
    seed = payload.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        out["seed"] = int(clamp(seed, *SEED_RANGE) or 1)
    return out


def convert_chat_request(payload: Json, stream: bool) -> Json:
    n = payload.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise unsupported("n > 1 is not supported by channel type Cloudflare")
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    request: Json = {
        "messages": [convert_message(m) for m in messages if isinstance(m, dict)],
        **sampling(payload),
    }
    tools = payload.get("tools")
    if isinstance(tools, list) and tools and payload.get("tool_choice") != "none":
        request["tools"] = tools  # Workers AI takes OpenAI's tool objects as they are
    fmt = response_format(payload.get("response_format"))
    if fmt is not None:
        request["response_format"] = fmt
    if stream:
        request["stream"] = True
    return request


def convert_completion_request(payload: Json, stream: bool) -> Json:
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise unsupported("Cloudflare completions take one text prompt")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise unsupported("Cloudflare completions take one text prompt")
    request: Json = {"prompt": prompt, **sampling(payload)}
    if stream:
        request["stream"] = True
    return request


def convert_embedding_request(payload: Json) -> Json:
    value = payload.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise unsupported("Cloudflare embeddings take a string or a list of strings")
    if len(texts) > MAX_EMBEDDING_BATCH:
        raise unsupported(f"Cloudflare embeddings take at most {MAX_EMBEDDING_BATCH} inputs")
    return {"text": texts}


# ---------------------------------------------------------------------- response


def success_error(data: Json) -> RelayError | None:
    """A 200 answer that still failed (`success: false`)."""
    if data.get("success") is not False:
        return None
    found = upstream_error_message(data) or ("Workers AI request failed", None)
    return RelayError(500, found[0], type=UPSTREAM_ERROR, code=found[1])


def response_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()  # JSON mode answers with the object itself


def tool_call(call: Any, index: int) -> Json | None:
    """Workers AI's `{name, arguments}` (or an OpenAI-shaped call) as OpenAI's."""
    if not isinstance(call, dict):
        return None
    function = call.get("function") if isinstance(call.get("function"), dict) else call
    name = function.get("name")
    if not name:
        return None
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = orjson.dumps(arguments if arguments is not None else {}).decode()
    return {
        "id": str(call.get("id") or f"call_{index}"),
        "type": "function",
        "function": {"name": str(name), "arguments": arguments},
    }


def tool_calls(result: Json) -> list[Json]:
    calls = result.get("tool_calls")
    converted = [tool_call(c, i) for i, c in enumerate(calls if isinstance(calls, list) else ())]
    return [c for c in converted if c is not None]


def openai_usage(value: Any) -> Json | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not isinstance(prompt, int | float) or not isinstance(completion, int | float):
        return None
    return {
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "total_tokens": int(prompt) + int(completion),
    }


def result_of(data: Json) -> Json:
    result = data.get("result")
    if isinstance(result, str):
        return {"response": result}
    return result if isinstance(result, dict) else {}


def convert_chat_response(data: Json, model: str) -> Json:
    result = result_of(data)
    calls = tool_calls(result)
    text = response_text(result.get("response"))
    message: Json = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    completion: Json = {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "tool_calls" if calls else "stop",
            }
        ],
    }
    usage = openai_usage(result.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def convert_completion_response(data: Json, model: str) -> Json:
    result = result_of(data)
    completion: Json = {
        "id": f"cmpl-{completion_id().removeprefix('chatcmpl-')}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": response_text(result.get("response")),
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    usage = openai_usage(result.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def convert_embedding_response(data: Json, model: str, encoding_format: Any = None) -> Json:
    """No `usage`: Workers AI counts nothing for embeddings, so the relay bills its own
    count of the input."""
    vectors = result_of(data).get("data")
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_embedding(vector, encoding_format),
            }
            for index, vector in enumerate(vectors if isinstance(vectors, list) else ())
            if isinstance(vector, list)
        ],
        "model": model,
    }


# ---------------------------------------------------------------------- stream


@dataclass
class CloudflareStream:
    """`data: {"response": ...}` events in, chat or completion chunks out."""

    client_wants_usage: bool
    model: str
    chat: bool = True
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    started: bool = False
    calls: int = 0

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:"):
            return None
        raw = line[5:].strip()
        if raw == DONE:
            return self._finish()
        event = parse_json_object(raw)
        if event is None:
            return None
        error = success_error(event) if "success" in event else None
        if error is not None or isinstance(event.get("error"), str | dict):
            return self._error(error, event)
        usage = openai_usage(event.get("usage"))
        if usage is not None:
            self.usage = usage
        frames = b""
        text = response_text(event.get("response"))
        if text:
            self.generated.append(text)
            frames += self._text(text)
        for call in tool_calls(event):
            frames += self._tool_call(call)
        return frames or None

    def _envelope(self, choices: list[Json]) -> Json:
        return {
            "id": self.id if self.chat else self.id.replace("chatcmpl-", "cmpl-", 1),
            "object": "chat.completion.chunk" if self.chat else "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _choice(self, delta: Json, finish: str | None = None) -> Json:
        if not self.chat:
            return {"index": 0, "text": delta.get("content", ""), "finish_reason": finish}
        if not self.started:
            delta = {"role": "assistant", **delta}
            self.started = True
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    def _text(self, text: str) -> bytes:
        return sse(self._envelope([self._choice({"content": text})]))

    def _tool_call(self, call: Json) -> bytes:
        function = call["function"]
        self.generated.extend((function["name"], function["arguments"]))
        self.calls += 1
        return sse(
            self._envelope([self._choice({"tool_calls": [{"index": self.calls - 1, **call}]})])
        )

    def _finish(self) -> bytes:
        if self.saw_done:
            return b""
        self.saw_done = True
        finish = "tool_calls" if self.calls else "stop"
        frames = sse(self._envelope([self._choice({}, finish)]))
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        return frames + DONE_FRAME

    def _error(self, error: RelayError | None, event: Json) -> bytes:
        raw = event.get("error")
        message = error.message if error is not None else None
        if message is None:
            message = raw.get("message") if isinstance(raw, dict) else raw
        self.upstream_error = {
            "message": str(message or "Workers AI stream error"),
            "type": UPSTREAM_ERROR,
            "param": None,
            "code": error.code if error is not None else None,
        }
        return error_event(self.upstream_error)


# ---------------------------------------------------------------------- adaptor


class CloudflareAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        mode = attempt.mode
        if mode is RelayMode.CHAT:
            payload = convert_chat_request(body.payload, attempt.stream)
        elif mode is RelayMode.COMPLETIONS:
            payload = convert_completion_request(body.payload, attempt.stream)
        elif mode is RelayMode.EMBEDDINGS:
            payload = convert_embedding_request(body.payload)
        else:
            raise unsupported(f"{mode.upstream_path} is not supported by channel type Cloudflare")
        headers = {
            "Authorization": f"Bearer {attempt.channel.key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if attempt.stream else "application/json",
        }
        return UpstreamRequest("POST", request_url(attempt), headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(
            f"{attempt.mode.upstream_path} is not supported by channel type Cloudflare"
        )

    async def send(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        return await send_reading_errors(call, upstream_error_message)

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        data = parse_json_object(body)
        if data is None:
            return body
        error = success_error(data)
        if error is not None:
            raise UpstreamFailure(error, retryable=is_retryable_status(error.status))
        if attempt.mode is RelayMode.EMBEDDINGS:
            encoding = client_payload(attempt).get("encoding_format")
            return orjson.dumps(convert_embedding_response(data, attempt.model, encoding))
        if attempt.mode is RelayMode.COMPLETIONS:
            return orjson.dumps(convert_completion_response(data, attempt.model))
        return orjson.dumps(convert_chat_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return CloudflareStream(
            client_wants_usage=client_wants_usage,
            model=attempt.model,
            chat=attempt.mode is RelayMode.CHAT,
        )
