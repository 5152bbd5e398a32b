"""Cohere's v1 Chat and Embed APIs, converted to and from OpenAI's.

Cohere's chat takes the current user `message` apart from the `chat_history` (roles USER,
CHATBOT, SYSTEM, TOOL) and the system prompt as `preamble`; tool results of the current turn
go in `tool_results` with an empty message. A `-internet` model name suffix turns on the
web-search connector (One API's convention). Streams are newline-delimited JSON events
(`stream-start`, `text-generation`, `tool-calls-generation`, ..., `stream-end`), or the same
events as SSE `data:` lines when asked for with `Accepts: text/event-stream` (as here).
Rerank (`/v1/rerank`) is Cohere's own format, which the relay's rerank endpoint speaks: the
body goes as the client sent it and the answer comes back as it is.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import client_payload, encode_embedding
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME

INTERNET_SUFFIX = "-internet"
WEB_SEARCH = {"id": "web-search"}
SYSTEM_ROLES = frozenset({"system", "developer"})
FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "USER_CANCEL": "stop",
    "MAX_TOKENS": "length",
    "ERROR_LIMIT": "length",
    "ERROR_TOXIC": "content_filter",
}
# JSON-schema types as the Python type names Cohere's parameter_definitions use.
PARAMETER_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "object": "Dict",
    "array": "List",
}
MAX_STOP_SEQUENCES = 5
# Embed v3 models require an input type; OpenAI's API has no such notion.
EMBED_INPUT_TYPE = "search_document"


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def unsupported_content(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_content")


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


# ---------------------------------------------------------------------- request


def text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text") or ""))
        elif isinstance(part, dict):
            raise unsupported_content(
                f"content part type {part.get('type')!r} is not supported by channel type Cohere"
            )
    return "".join(texts)


def split_model(model: str) -> tuple[str, list[dict[str, str]]]:
    """(upstream model, connectors): `command-r-internet` is command-r with web search."""
    if model.endswith(INTERNET_SUFFIX):
        return model.removesuffix(INTERNET_SUFFIX), [dict(WEB_SEARCH)]
    return model, []


def parse_arguments(arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def cohere_calls(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(call id, Cohere tool call) of an assistant message's tool calls."""
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and function.get("name"):
            converted = {
                "name": str(function["name"]),
                "parameters": parse_arguments(function.get("arguments")),
            }
            calls.append((str(call.get("id") or ""), converted))
    return calls


def tool_outputs(content: Any) -> list[dict[str, Any]]:
    """Cohere wants a list of objects: a JSON object or list of objects as is, anything
    else wrapped as `{"result": ...}`."""
    text = text_of(content)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return [{"result": text}]
    if isinstance(parsed, dict):
        return [parsed]
    if isinstance(parsed, list) and parsed and all(isinstance(item, dict) for item in parsed):
        return parsed
    return [{"result": parsed}]


def tool_result(message: dict[str, Any], calls: dict[str, dict[str, Any]]) -> dict[str, Any]:
    call = calls.get(str(message.get("tool_call_id") or ""))
    if call is None:  # an unknown id: the function name is all there is to go on
        call = {"name": str(message.get("name") or ""), "parameters": {}}
    return {"call": call, "outputs": tool_outputs(message.get("content"))}


def history_entries(
    messages: list[dict[str, Any]], calls: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("tool", "function"):
            result = tool_result(message, calls)
            if history and history[-1]["role"] == "TOOL":
                history[-1]["tool_results"].append(result)
            else:
                history.append({"role": "TOOL", "tool_results": [result]})
            continue
        text = text_of(message.get("content"))
        if role == "assistant":
            entry: dict[str, Any] = {"role": "CHATBOT", "message": text}
            tool_calls = [call for _, call in cohere_calls(message)]
            if tool_calls:
                entry["tool_calls"] = tool_calls
            if text or tool_calls:
                history.append(entry)
        elif text:
            history.append({"role": "SYSTEM" if role in SYSTEM_ROLES else "USER", "message": text})
    return history


def parameter_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    name = PARAMETER_TYPES.get(kind, "str") if isinstance(kind, str) else "str"
    items = schema.get("items")
    if name == "List" and isinstance(items, dict):
        return f"List[{parameter_type(items)}]"
    return name


def convert_tool(function: dict[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters") if isinstance(function.get("parameters"), dict) else {}
    properties = parameters.get("properties") if isinstance(parameters, dict) else None
    required = set(parameters.get("required") or ()) if isinstance(parameters, dict) else set()
    definitions = {}
    for name, schema in (properties or {}).items():
        schema = schema if isinstance(schema, dict) else {}
        definitions[name] = {
            "description": str(schema.get("description") or ""),
            "type": parameter_type(schema),
            "required": name in required,
        }
    return {
        "name": str(function["name"]),
        # Cohere requires a description; the name is the best one there is.
        "description": str(function.get("description") or function["name"]),
        "parameter_definitions": definitions,
    }


def convert_tools(payload: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for tool in payload.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            tools.append(convert_tool(function))
    return tools


def stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        stops = [stop] if stop else []
    elif isinstance(stop, list):
        stops = [item for item in stop if isinstance(item, str) and item]
    else:
        stops = []
    return stops[:MAX_STOP_SEQUENCES]


def sampling(payload: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's sampling fields, clamped to the ranges Cohere accepts."""
    fields: dict[str, Any] = {}

    def number(name: str) -> float | None:
        value = payload.get(name)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    if (temperature := number("temperature")) is not None:
        fields["temperature"] = max(temperature, 0.0)
    if (top_p := number("top_p")) is not None:
        fields["p"] = clamp(top_p, 0.01, 0.99)
    if (top_k := number("top_k")) is not None:
        fields["k"] = int(clamp(top_k, 0, 500))
    for name in ("frequency_penalty", "presence_penalty"):
        if (penalty := number(name)) is not None:
            fields[name] = clamp(penalty, 0.0, 1.0)
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        fields["max_tokens"] = max_tokens
    if isinstance(payload.get("seed"), int):
        fields["seed"] = payload["seed"]
    stops = stop_sequences(payload.get("stop"))
    if stops:
        fields["stop_sequences"] = stops
    return fields


def response_format(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or value.get("type") not in ("json_object", "json_schema"):
        return None
    converted: dict[str, Any] = {"type": "json_object"}
    schema = value.get("json_schema")
    if isinstance(schema, dict) and isinstance(schema.get("schema"), dict):
        converted["schema"] = schema["schema"]
    return converted


def split_turn(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any] | None]:
    """(history, trailing tool results, current user message) of a conversation without
    its leading system messages."""
    trailing: list[dict[str, Any]] = []
    while messages and messages[-1].get("role") in ("tool", "function"):
        trailing.insert(0, messages[-1])
        messages = messages[:-1]
    if trailing:
        return messages, trailing, None
    if messages and messages[-1].get("role") not in ("assistant", *SYSTEM_ROLES):
        return messages[:-1], [], messages[-1]
    raise RelayError(
        400,
        "channel type Cohere needs the conversation to end with a user message or tool results",
        code="invalid_messages",
    )


def convert_request(payload: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """An OpenAI chat request as a Cohere v1 chat request."""
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise unsupported("n > 1 is not supported by channel type Cohere")
    upstream_model, connectors = split_model(model)
    raw = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    messages = [m for m in raw if isinstance(m, dict)]
    lead = 0
    while lead < len(messages) and messages[lead].get("role") in SYSTEM_ROLES:
        lead += 1
    preamble = "\n".join(t for t in (text_of(m.get("content")) for m in messages[:lead]) if t)
    rest = messages[lead:]
    if not rest and preamble:  # a system prompt alone is the question
        rest, preamble = [{"role": "user", "content": preamble}], ""
    calls = {
        call_id: call
        for message in rest
        if message.get("role") == "assistant"
        for call_id, call in cohere_calls(message)
    }
    history, trailing, current = split_turn(rest)
    request: dict[str, Any] = {
        "model": upstream_model,
        "message": text_of(current.get("content")) if current is not None else "",
    }
    entries = history_entries(history, calls)
    if entries:
        request["chat_history"] = entries
    if preamble:
        request["preamble"] = preamble
    if trailing:
        request["tool_results"] = [tool_result(message, calls) for message in trailing]
    tools = convert_tools(payload)
    # Tool results need their tools beside them; `tool_choice: "none"` otherwise drops them.
    if tools and (trailing or payload.get("tool_choice") != "none"):
        request["tools"] = tools
    if connectors:
        request["connectors"] = connectors
    request.update(sampling(payload))
    output_format = response_format(payload.get("response_format"))
    if output_format is not None:
        request["response_format"] = output_format
    request["stream"] = stream
    return request


def convert_embedding_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    value = payload.get("input")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise unsupported_content("channel type Cohere embeds strings only, not token arrays")
    return {"model": model, "texts": texts, "input_type": EMBED_INPUT_TYPE}


# ---------------------------------------------------------------------- response


def openai_usage(meta: Any) -> dict[str, int] | None:
    """What Cohere billed (`billed_units`), else the raw token counts."""
    if not isinstance(meta, dict):
        return None
    for name in ("billed_units", "tokens"):
        units = meta.get(name)
        if not isinstance(units, dict):
            continue
        prompt, completion = units.get("input_tokens"), units.get("output_tokens")
        if isinstance(prompt, int | float) or isinstance(completion, int | float):
            prompt = int(prompt) if isinstance(prompt, int | float) else 0
            completion = int(completion) if isinstance(completion, int | float) else 0
            return {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
    return None


def finish_reason(reason: Any, has_tool_calls: bool) -> str:
    if has_tool_calls:
        return "tool_calls"
    return FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"


def completion_id(generation_id: Any) -> str:
    return f"chatcmpl-{generation_id}" if generation_id else f"chatcmpl-{secrets.token_hex(12)}"


def openai_tool_calls(calls: Any) -> list[dict[str, Any]]:
    """Cohere's calls carry no ids: each gets one, which the client echoes back with the
    result, and the call itself (name, parameters) comes back in the assistant message."""
    converted = []
    for call in calls if isinstance(calls, list) else ():
        if not isinstance(call, dict) or not call.get("name"):
            continue
        converted.append(
            {
                "id": str(call.get("id") or f"call_{secrets.token_hex(12)}"),
                "type": "function",
                "function": {
                    "name": str(call["name"]),
                    "arguments": orjson.dumps(call.get("parameters") or {}).decode(),
                },
            }
        )
    return converted


def convert_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A Cohere chat response as an OpenAI chat.completion."""
    calls = openai_tool_calls(data.get("tool_calls"))
    text = str(data.get("text") or "")
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    result: dict[str, Any] = {
        "id": completion_id(data.get("generation_id") or data.get("response_id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(data.get("finish_reason"), bool(calls)),
            }
        ],
    }
    usage = openai_usage(data.get("meta"))
    if usage is not None:
        result["usage"] = usage
    return result


def convert_embedding_response(
    data: dict[str, Any], model: str, encoding_format: Any = None
) -> dict[str, Any]:
    embeddings = data.get("embeddings")
    if isinstance(embeddings, dict):  # asked for by type: {"float": [...]}
        embeddings = embeddings.get("float")
    vectors = [v if isinstance(v, list) else [] for v in embeddings or ()]
    items = [
        {"object": "embedding", "index": index, "embedding": encode_embedding(v, encoding_format)}
        for index, v in enumerate(vectors)
    ]
    result: dict[str, Any] = {"object": "list", "data": items, "model": model}
    meta = data.get("meta")
    units = meta.get("billed_units") if isinstance(meta, dict) else None
    tokens = units.get("input_tokens") if isinstance(units, dict) else None
    if isinstance(tokens, int | float):
        result["usage"] = {"prompt_tokens": int(tokens), "total_tokens": int(tokens)}
    return result


# ---------------------------------------------------------------------- stream


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class CohereStream:
    """Cohere's stream events in, OpenAI chunks out; one instance per response."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    started: bool = False
    tool_calls: int = 0

    def accept(self, line: bytes) -> bytes | None:
        line = line.strip()
        if line.startswith(b"data:"):  # the SSE form (`Accepts: text/event-stream`)
            line = line[5:].strip()
        if not line or self.saw_done or self.upstream_error is not None:
            return None
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict):
            return None
        handler = getattr(self, "_on_" + str(event.get("event_type")).replace("-", "_"), None)
        return handler(event) if handler is not None else None

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.id:
            self.id = completion_id(None)
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self.started:
            self.started = True
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(self._envelope([choice]))

    def _on_stream_start(self, event: dict[str, Any]) -> bytes:
        self.id = completion_id(event.get("generation_id"))
        return self._chunk({"content": ""})

    def _on_text_generation(self, event: dict[str, Any]) -> bytes | None:
        text = event.get("text")
        if not isinstance(text, str) or not text:
            return None
        self.generated.append(text)
        return self._chunk({"content": text})

    def _on_tool_calls_generation(self, event: dict[str, Any]) -> bytes | None:
        # The whole calls at once (`tool-calls-chunk` events stream the same in pieces).
        calls = openai_tool_calls(event.get("tool_calls"))
        if not calls:
            return None
        indexed = [{"index": self.tool_calls + i, **call} for i, call in enumerate(calls)]
        self.tool_calls += len(calls)
        for call in calls:
            self.generated += [call["function"]["name"], call["function"]["arguments"]]
        return self._chunk({"tool_calls": indexed})

    def _on_stream_end(self, event: dict[str, Any]) -> bytes:
        response = event.get("response") if isinstance(event.get("response"), dict) else {}
        reason = event.get("finish_reason") or response.get("finish_reason")
        self.usage = openai_usage(response.get("meta"))
        if reason == "ERROR":
            message = response.get("text") or "Cohere ended the stream with an error"
            self.upstream_error = {
                "message": str(message),
                "type": UPSTREAM_ERROR,
                "param": None,
                "code": "ERROR",
            }
            return sse({"error": self.upstream_error})
        frames = self._chunk({}, finish_reason(reason, self.tool_calls > 0))
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        self.saw_done = True
        return frames + DONE_FRAME


# ---------------------------------------------------------------------- adaptor


def request_url(attempt: Attempt, path: str) -> str:
    return base_url(attempt).removesuffix("/v1") + path


def request_headers(attempt: Attempt) -> dict[str, str]:
    headers = {
        "authorization": f"Bearer {attempt.channel.key}",
        "content-type": "application/json",
        "accept": "application/json",
    }
    if attempt.stream:
        # Cohere's own switch (sic: `Accepts`) to frame the events as SSE, whose content
        # type tells the relay the answer is a stream; the translator reads either framing.
        headers["accept"] = headers["accepts"] = "text/event-stream"
    return headers


class CohereAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is RelayMode.CHAT:
            payload = convert_request(body.payload, attempt.model, attempt.stream)
            path = "/v1/chat"
        elif attempt.mode is RelayMode.EMBEDDINGS:
            payload = convert_embedding_request(body.payload, attempt.model)
            path = "/v1/embed"
        elif attempt.mode is RelayMode.RERANK:
            return UpstreamRequest(
                "POST",
                request_url(attempt, "/v1/rerank"),
                request_headers(attempt),
                body.to_bytes(),
            )
        else:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Cohere"
            )
        return UpstreamRequest(
            "POST", request_url(attempt, path), request_headers(attempt), orjson.dumps(payload)
        )

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Cohere")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        if attempt.mode is RelayMode.RERANK:
            return body  # already the rerank format
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        if attempt.mode is RelayMode.EMBEDDINGS:
            encoding = client_payload(attempt).get("encoding_format")
            return orjson.dumps(convert_embedding_response(data, attempt.model, encoding))
        return orjson.dumps(convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return CohereStream(client_wants_usage=client_wants_usage, model=attempt.model)
