"""Alibaba DashScope's native API (channel type 17), converted to and from OpenAI's.

Chat goes to the text-generation service, or to the multimodal one for Qwen-VL models and
requests with images, always with `result_format: "message"`; streams ask for server-sent
events (`X-DashScope-SSE: enable`) with incremental output, whose `data:` lines carry the
same object as a whole answer. Embeddings go to the text-embedding service. Images are
asynchronous tasks (`X-DashScope-Async: enable`): `send` submits one, polls
`/api/v1/tasks/{id}` until it ends and answers with OpenAI's images object. A model name
ending in `-internet` turns on DashScope's web search, as in One API.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import client_payload, encode_embedding
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure, failure_from_exception, failure_from_response
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME
from relay.upstream import get_client

TEXT_PATH = "/api/v1/services/aigc/text-generation/generation"
MULTIMODAL_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
EMBEDDING_PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
IMAGE_PATH = "/api/v1/services/aigc/text2image/image-synthesis"
TASK_PATH = "/api/v1/tasks/"
SEARCH_SUFFIX = "-internet"
# Models that only the multimodal service serves.
MULTIMODAL_MARKERS = ("-vl", "qvq", "-audio")
# DashScope takes temperature in [0, 2) and top_p in (0, 1]; One API keeps top_p below 1,
# which older models required.
MAX_TEMPERATURE = 1.99
MIN_TOP_P = 0.0001
MAX_TOP_P = 0.9999
FINISH_REASONS = {"stop": "stop", "length": "length", "tool_calls": "tool_calls"}
SYSTEM_ROLES = frozenset({"system", "developer"})
# Fields an aware client may send for DashScope itself; they go into `parameters` as is.
NATIVE_PARAMETERS = (
    "top_k",
    "repetition_penalty",
    "enable_thinking",
    "thinking_budget",
    "parallel_tool_calls",
)
TASK_DONE = frozenset({"SUCCEEDED", "FAILED", "CANCELED", "UNKNOWN"})
# Task failures that are the request's fault: another channel would fail the same way.
CLIENT_TASK_CODES = frozenset({"InvalidParameter", "DataInspectionFailed", "IPInfringementSuspect"})
MAX_IMAGE_BYTES = 20 * 1024 * 1024

Json = dict[str, Any]


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def unsupported_content(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_content")


def clamp(value: Any, low: float, high: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return min(max(float(value), low), high)


# ---------------------------------------------------------------------- chat request


def split_model(model: str) -> tuple[str, bool]:
    """(model name DashScope knows, whether web search is on) of a requested model."""
    if model.endswith(SEARCH_SUFFIX):
        return model.removesuffix(SEARCH_SUFFIX), True
    return model, False


def part_url(part: dict[str, Any], kind: str) -> str:
    value = part.get(kind)
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise RelayError(400, f"{kind} part without a url", code="invalid_image_url")
    return url


def content_parts(content: Any) -> list[Json]:
    """OpenAI message content as DashScope multimodal items (`{"text"}`, `{"image"}`)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        return [{"text": str(content)}]
    items: list[Json] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                items.append({"text": str(part["text"])})
        elif kind == "image_url":
            items.append({"image": part_url(part, "image_url")})
        elif kind == "input_audio":
            audio = part.get("input_audio") if isinstance(part.get("input_audio"), dict) else {}
            data, fmt = audio.get("data"), audio.get("format") or "wav"
            if not isinstance(data, str) or not data:
                raise unsupported_content("input_audio part without data")
            items.append({"audio": f"data:audio/{fmt};base64,{data}"})
        else:
            raise unsupported_content(
                f"content part type {kind!r} is not supported by channel type Ali"
            )
    return items


def text_of(content: Any) -> str:
    """The text of OpenAI content; media parts are refused (the caller checked there are
    none, or the model is a text model)."""
    texts = []
    for item in content_parts(content):
        if "text" not in item:
            raise unsupported_content("images and audio need a Qwen-VL or Qwen-Audio model")
        texts.append(item["text"])
    return "\n".join(texts) if len(texts) > 1 else "".join(texts)


def has_media(messages: list[Any]) -> bool:
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") in ("image_url", "input_audio"):
                    return True
    return False


def is_multimodal(model: str, messages: list[Any]) -> bool:
    return any(marker in model for marker in MULTIMODAL_MARKERS) or has_media(messages)


def tool_calls_of(message: dict[str, Any]) -> list[Json]:
    calls = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        calls.append(
            {
                "id": str(call.get("id") or ""),
                "type": "function",
                "function": {
                    "name": str(function.get("name") or ""),
                    "arguments": str(function.get("arguments") or "{}"),
                },
            }
        )
    return calls


def convert_message(message: dict[str, Any], multimodal: bool, names: dict[str, str]) -> Json:
    role = message.get("role")
    if role in SYSTEM_ROLES:
        role = "system"
    content = message.get("content")
    converted: Json = {"role": role}
    if multimodal and role in ("system", "user", "assistant"):
        converted["content"] = content_parts(content)
    else:
        converted["content"] = text_of(content)
    if role == "assistant":
        calls = tool_calls_of(message)
        if calls:
            converted["tool_calls"] = calls
            for call in calls:
                names[call["id"]] = call["function"]["name"]
    elif role == "tool":
        call_id = str(message.get("tool_call_id") or "")
        converted["tool_call_id"] = call_id
        name = message.get("name") or names.get(call_id)
        if name:
            converted["name"] = str(name)
    return converted


def convert_messages(messages: list[Any], multimodal: bool) -> list[Json]:
    names: dict[str, str] = {}  # tool call id -> function name, for the tool results
    return [
        convert_message(message, multimodal, names)
        for message in messages
        if isinstance(message, dict) and message.get("role")
    ]


def convert_tools(payload: dict[str, Any]) -> list[Json]:
    tools = payload.get("tools")
    if not tools and isinstance(payload.get("functions"), list):
        tools = [{"type": "function", "function": f} for f in payload["functions"]]
    converted = []
    for tool in tools if isinstance(tools, list) else ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            entry: Json = {"name": function["name"]}
            if function.get("description"):
                entry["description"] = function["description"]
            entry["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
            converted.append({"type": "function", "function": entry})
    return converted


def convert_tool_choice(choice: Any, tools: list[Json]) -> Any:
    """DashScope knows "auto", "none" and one named function; OpenAI's "required" can only be
    honoured when there is a single tool to force."""
    if choice in ("auto", "none"):
        return choice
    if choice == "required":
        if len(tools) == 1:
            return {"type": "function", "function": {"name": tools[0]["function"]["name"]}}
        raise unsupported('tool_choice "required" with several tools is not supported by Ali')
    if isinstance(choice, dict):
        function = choice.get("function")
        if isinstance(function, dict) and function.get("name"):
            return {"type": "function", "function": {"name": function["name"]}}
    return None


def stop_words(stop: Any) -> list[str] | None:
    if isinstance(stop, str):
        return [stop] if stop else None
    if isinstance(stop, list):
        words = [item for item in stop if isinstance(item, str) and item]
        return words or None
    return None


def chat_parameters(payload: dict[str, Any], stream: bool, search: bool) -> Json:
    parameters: Json = {"result_format": "message"}
    if stream:
        parameters["incremental_output"] = True
    if search:
        parameters["enable_search"] = True
    temperature = clamp(payload.get("temperature"), 0.0, MAX_TEMPERATURE)
    if temperature is not None:
        parameters["temperature"] = temperature
    top_p = clamp(payload.get("top_p"), MIN_TOP_P, MAX_TOP_P)
    if top_p is not None:
        parameters["top_p"] = top_p
    presence = clamp(payload.get("presence_penalty"), -2.0, 2.0)
    if presence is not None:
        parameters["presence_penalty"] = presence
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        parameters["max_tokens"] = max_tokens
    seed = payload.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        parameters["seed"] = seed % 2**31  # DashScope takes [0, 2^31 - 1]
    words = stop_words(payload.get("stop"))
    if words:
        parameters["stop"] = words
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        parameters["n"] = n
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in (
        "json_object",
        "json_schema",
    ):
        parameters["response_format"] = response_format
    for name in NATIVE_PARAMETERS:
        if payload.get(name) is not None:
            parameters[name] = payload[name]
    tools = convert_tools(payload)
    if tools:
        parameters["tools"] = tools
        choice = convert_tool_choice(payload.get("tool_choice"), tools)
        if choice is not None:
            parameters["tool_choice"] = choice
    return parameters


def convert_request(payload: dict[str, Any], model: str, stream: bool) -> tuple[Json, bool]:
    """(DashScope generation request, whether it is for the multimodal service)."""
    name, search = split_model(model)
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    multimodal = is_multimodal(name, messages)
    request = {
        "model": name,
        "input": {"messages": convert_messages(messages, multimodal)},
        "parameters": chat_parameters(payload, stream, search),
    }
    return request, multimodal


# ---------------------------------------------------------------------- chat response


def openai_usage(usage: Any) -> Json | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = usage.get("total_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


def message_text(content: Any) -> str:
    """A DashScope message's text: a string, or multimodal `[{"text": ...}]` items."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(item["text"]) for item in content if isinstance(item, dict) and "text" in item
        )
    return ""


def finish_reason(reason: Any, has_calls: bool) -> str | None:
    if not isinstance(reason, str) or reason in ("", "null"):
        return None
    mapped = FINISH_REASONS.get(reason, "stop")
    return "tool_calls" if has_calls and mapped == "stop" else mapped


def response_tool_calls(calls: Any) -> list[Json]:
    converted = []
    for position, call in enumerate(calls if isinstance(calls, list) else ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        converted.append(
            {
                "id": call.get("id") or f"call_{time.time_ns()}_{position}",
                "type": "function",
                "function": {
                    "name": function.get("name") or "",
                    "arguments": function.get("arguments") or "",
                },
            }
        )
    return converted


def response_choices(output: Json) -> list[Json]:
    choices = output.get("choices")
    if isinstance(choices, list):
        return [c for c in choices if isinstance(c, dict)]
    if "text" in output:  # result_format "text", should an upstream ignore ours
        return [
            {
                "message": {"role": "assistant", "content": output.get("text") or ""},
                "finish_reason": output.get("finish_reason"),
            }
        ]
    return []


def completion_id(request_id: Any) -> str:
    return f"chatcmpl-{request_id}" if request_id else f"chatcmpl-{time.time_ns()}"


def convert_response(data: Json, model: str) -> Json:
    """A DashScope generation answer as an OpenAI chat.completion."""
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    choices = []
    for position, choice in enumerate(response_choices(output)):
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        calls = response_tool_calls(message.get("tool_calls"))
        text = message_text(message.get("content"))
        converted: Json = {"role": "assistant", "content": text or (None if calls else "")}
        if message.get("reasoning_content"):
            converted["reasoning_content"] = message["reasoning_content"]
        if calls:
            converted["tool_calls"] = calls
        index = choice.get("index")
        choices.append(
            {
                "index": index if isinstance(index, int) else position,
                "message": converted,
                "logprobs": None,
                "finish_reason": finish_reason(choice.get("finish_reason"), bool(calls)) or "stop",
            }
        )
    result: Json = {
        "id": completion_id(data.get("request_id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    usage = openai_usage(data.get("usage"))
    if usage is not None:
        result["usage"] = usage
    return result


def error_of(data: Json) -> Json | None:
    """`{code, message, request_id}`: DashScope's error body (a success has `output`)."""
    code = data.get("code")
    if code and "output" not in data:
        return {"code": str(code), "message": str(data.get("message") or code)}
    return None


def raise_error(data: Json, status: int = 500) -> None:
    error = error_of(data)
    if error is not None:
        raise UpstreamFailure(
            RelayError(status, error["message"], type=UPSTREAM_ERROR, code=error["code"]),
            retryable=status != 400,
        )


# ---------------------------------------------------------------------- embeddings


def embedding_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    raise unsupported_content("channel type Ali embeds strings only, not token arrays")


def convert_embedding_request(payload: dict[str, Any], model: str) -> Json:
    request: Json = {"model": model, "input": {"texts": embedding_texts(payload.get("input"))}}
    dimensions = payload.get("dimensions")
    if isinstance(dimensions, int) and dimensions > 0:
        request["parameters"] = {"dimension": dimensions}
    return request


def convert_embedding_response(data: Json, model: str, encoding_format: Any = None) -> Json:
    output = data.get("output") if isinstance(data.get("output"), dict) else {}
    items = []
    embeddings = [e for e in output.get("embeddings") or () if isinstance(e, dict)]
    for position, embedding in enumerate(embeddings):
        index = embedding.get("text_index")
        vector = embedding.get("embedding") if isinstance(embedding.get("embedding"), list) else []
        items.append(
            {
                "object": "embedding",
                "index": index if isinstance(index, int) else position,
                "embedding": encode_embedding(vector, encoding_format),
            }
        )
    items.sort(key=lambda item: item["index"])
    result: Json = {"object": "list", "data": items, "model": model}
    usage = data.get("usage")
    total = usage.get("total_tokens") if isinstance(usage, dict) else None
    if isinstance(total, int):
        # An embedding is all prompt: nothing is generated.
        result["usage"] = {"prompt_tokens": total, "total_tokens": total}
    return result


# ---------------------------------------------------------------------- images


def convert_image_request(payload: dict[str, Any], model: str) -> Json:
    request: Json = {"model": model, "input": {"prompt": str(payload.get("prompt") or "")}}
    if isinstance(payload.get("negative_prompt"), str) and payload["negative_prompt"]:
        request["input"]["negative_prompt"] = payload["negative_prompt"]
    parameters: Json = {}
    size = payload.get("size")
    if isinstance(size, str) and size:
        parameters["size"] = size.replace("x", "*")
    n = payload.get("n")
    if isinstance(n, int) and n > 0:
        parameters["n"] = n
    seed = payload.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        parameters["seed"] = seed
    style = payload.get("style")
    if isinstance(style, str) and style.startswith("<"):  # wanx's "<watercolor>" styles
        parameters["style"] = style
    if parameters:
        request["parameters"] = parameters
    return request


def task_results(task: Json) -> list[Json]:
    output = task.get("output") if isinstance(task.get("output"), dict) else {}
    return [
        result
        for result in output.get("results") or ()
        if isinstance(result, dict) and result.get("url")
    ]


def image_response(task: Json, b64_images: list[str] | None = None) -> Json:
    """A finished image task as OpenAI's images object: URLs, or the images themselves in
    base64 when the client asked for `b64_json` (then `b64_images` holds them)."""
    data = []
    for position, result in enumerate(task_results(task)):
        if b64_images is not None:
            item: Json = {"b64_json": b64_images[position]}
        else:
            item = {"url": result["url"]}
        revised = result.get("actual_prompt")
        if isinstance(revised, str) and revised:
            item["revised_prompt"] = revised
        data.append(item)
    return {"created": int(time.time()), "data": data}


def task_failure(task: Json) -> UpstreamFailure:
    output = task.get("output") if isinstance(task.get("output"), dict) else {}
    code = str(output.get("code") or task.get("code") or "")
    status = output.get("task_status") or "FAILED"
    message = str(output.get("message") or task.get("message") or f"image task {status}")
    if not code and output.get("results"):
        failed = [r for r in output["results"] if isinstance(r, dict) and r.get("code")]
        if failed:
            code, message = str(failed[0]["code"]), str(failed[0].get("message") or message)
    http_status = 400 if code in CLIENT_TASK_CODES else 500
    return UpstreamFailure(
        RelayError(http_status, message, type=UPSTREAM_ERROR, code=code or "ali_task_failed"),
        retryable=http_status != 400,
    )


# ---------------------------------------------------------------------- stream


def sse(event: Json) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class AliStream:
    """DashScope SSE (`id:`, `event:`, `:HTTP_STATUS/200`, `data:` lines) in, OpenAI chunks
    out. Every `data:` object is a whole answer holding this event's increment; its usage is
    cumulative. The stream ends with the event whose choices all have a finish_reason."""

    client_wants_usage: bool
    model: str
    choices: int = 1
    usage: Json | None = None
    saw_done: bool = False
    upstream_error: Json | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    event: str = ""
    started: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)

    def accept(self, line: bytes) -> bytes | None:
        if line.startswith(b"event:"):
            self.event = line[6:].strip().decode(errors="replace")
            return None
        if not line.startswith(b"data:"):
            return None  # ids, `:HTTP_STATUS/200` comments, blank lines
        try:
            data = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        if self.event == "error" or error_of(data) is not None:
            return self._error(data)
        usage = openai_usage(data.get("usage"))
        if usage is not None:
            self.usage = usage
        if self.saw_done:
            return None
        if not self.id:
            self.id = completion_id(data.get("request_id"))
        output = data.get("output") if isinstance(data.get("output"), dict) else {}
        frames = b"".join(
            self._choice(choice, position)
            for position, choice in enumerate(response_choices(output))
        )
        if len(self.finished) >= self.choices:
            frames += self._finish()
        return frames or None

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

    def _choice(self, choice: Json, position: int) -> bytes:
        index = choice.get("index") if isinstance(choice.get("index"), int) else position
        if index in self.finished:
            return b""
        message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        delta: Json = {}
        if index not in self.started:
            delta["role"] = "assistant"
        reasoning = message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            delta["reasoning_content"] = reasoning
            self.generated.append(reasoning)
        text = message_text(message.get("content"))
        if text:
            delta["content"] = text
            self.generated.append(text)
        calls = self._tool_calls(message.get("tool_calls"))
        if calls:
            delta["tool_calls"] = calls
        finish = finish_reason(choice.get("finish_reason"), False)
        if finish is not None:
            self.finished.add(index)
        if set(delta) <= {"role"} and finish is None:
            return b""  # nothing new yet: keep the role for the first real increment
        self.started.add(index)
        if "content" not in delta and "tool_calls" not in delta and "role" in delta:
            delta["content"] = ""
        entry = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(self._envelope([entry]))

    def _tool_calls(self, calls: Any) -> list[Json]:
        converted = []
        for position, call in enumerate(calls if isinstance(calls, list) else ()):
            if not isinstance(call, dict):
                continue
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            index = call.get("index") if isinstance(call.get("index"), int) else position
            entry: Json = {"index": index}
            if call.get("id"):
                entry["id"] = call["id"]
                entry["type"] = "function"
            fn: Json = {}
            for name in ("name", "arguments"):
                value = function.get(name)
                if isinstance(value, str) and value:
                    fn[name] = value
                    self.generated.append(value)
            if fn:
                entry["function"] = fn
            if len(entry) > 1:
                converted.append(entry)
        return converted

    def _finish(self) -> bytes:
        frames = b""
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        self.saw_done = True
        return frames + DONE_FRAME

    def _error(self, data: Json) -> bytes:
        self.upstream_error = {
            "message": str(data.get("message") or "upstream stream error"),
            "type": UPSTREAM_ERROR,
            "param": None,
            "code": data.get("code"),
        }
        return sse({"error": self.upstream_error})


# ---------------------------------------------------------------------- sending


def sse_error_body(body: bytes) -> bytes:
    """The JSON of a failed SSE answer: DashScope keeps the event-stream framing on errors
    (`event:error`, `:HTTP_STATUS/401`, `data:{"code",...}`)."""
    for line in reversed(body.splitlines()):
        if line.startswith(b"data:"):
            return line[5:].strip()
    return body


async def send_dashscope(call: UpstreamRequest) -> httpx.Response:
    """`relay.transport.send_upstream`, reading the error out of a failed SSE answer too."""
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
    raise failure_from_response(response.status_code, sse_error_body(body), response.headers)


async def read_all(response: httpx.Response) -> bytes:
    # `relay.transport.read_body`, which this module cannot import: transport imports the
    # adaptors package.
    try:
        return await response.aread()
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    finally:
        await response.aclose()


async def fetch_json(call: UpstreamRequest) -> Json:
    raw = await read_all(await send_dashscope(call))
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise UpstreamFailure(
            RelayError(
                500,
                "DashScope answered with something other than a JSON object",
                code="bad_response_body",
            ),
            retryable=True,
        )
    raise_error(data)
    return data


async def fetch_image(url: str) -> str:
    """An image of a finished task, base64-encoded (the result URLs are OSS links)."""
    try:
        async with get_client().stream("GET", url) as response:
            if response.status_code != 200:
                raise RelayError(
                    502,
                    f"fetching the generated image failed: HTTP {response.status_code}",
                    code="image_fetch_failed",
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise RelayError(
                        502, "the generated image is too large", code="image_fetch_failed"
                    )
                chunks.append(chunk)
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    return base64.b64encode(b"".join(chunks)).decode()


def json_response(call: UpstreamRequest, data: Json) -> httpx.Response:
    return httpx.Response(
        200,
        headers={"content-type": "application/json"},
        content=orjson.dumps(data),
        request=httpx.Request(call.method, call.url),
    )


# ---------------------------------------------------------------------- adaptor


class AliAdaptor(Adaptor):
    # Image tasks: how often to ask, and how long to wait in all (wanx takes 10-30 s).
    poll_interval = 2.0
    task_timeout = 180.0

    def headers(self, attempt: Attempt) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {attempt.channel.key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if attempt.stream else "application/json",
        }
        if attempt.stream:
            headers["X-DashScope-SSE"] = "enable"
        plugin = attempt.channel.config.get("plugin")
        if isinstance(plugin, str) and plugin:
            headers["X-DashScope-Plugin"] = plugin
        return headers

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        headers = self.headers(attempt)
        mode = attempt.mode
        if mode is RelayMode.CHAT:
            payload, multimodal = convert_request(body.payload, attempt.model, attempt.stream)
            path = MULTIMODAL_PATH if multimodal else TEXT_PATH
        elif mode is RelayMode.EMBEDDINGS:
            payload, path = convert_embedding_request(body.payload, attempt.model), EMBEDDING_PATH
        elif mode is RelayMode.IMAGES_GENERATIONS:
            payload, path = convert_image_request(body.payload, attempt.model), IMAGE_PATH
            headers["X-DashScope-Async"] = "enable"
        else:
            raise unsupported(f"{mode.upstream_path} is not supported by channel type Ali")
        return UpstreamRequest("POST", base_url(attempt) + path, headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Ali")

    async def send(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        if attempt.mode is RelayMode.IMAGES_GENERATIONS:
            return await self.run_image_task(attempt, call)
        return await send_dashscope(call)

    async def run_image_task(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        """Submit the task, poll it until it ends (bounded), and answer in OpenAI's format."""
        submitted = await fetch_json(call)
        output = submitted.get("output") if isinstance(submitted.get("output"), dict) else {}
        task_id = output.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamFailure(
                RelayError(
                    500,
                    "DashScope accepted the image task without a task_id",
                    code="ali_task_failed",
                ),
                retryable=True,
            )
        poll = UpstreamRequest(
            "GET",
            base_url(attempt) + TASK_PATH + task_id,
            {"Authorization": f"Bearer {attempt.channel.key}"},
        )
        deadline = time.monotonic() + self.task_timeout
        task = submitted
        while (task.get("output") or {}).get("task_status") not in TASK_DONE:
            if time.monotonic() >= deadline:
                # Not retried: the task may still finish, and be paid for, upstream.
                raise UpstreamFailure(
                    RelayError(
                        504,
                        f"image task {task_id} did not finish in {self.task_timeout:g}s",
                        code="ali_task_timeout",
                    ),
                    retryable=False,
                )
            await asyncio.sleep(self.poll_interval)
            task = await fetch_json(poll)
        if task["output"]["task_status"] != "SUCCEEDED" or not task_results(task):
            raise task_failure(task)
        b64_images = None
        if client_payload(attempt).get("response_format") == "b64_json":
            b64_images = [await fetch_image(r["url"]) for r in task_results(task)]
        return json_response(call, image_response(task, b64_images))

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        if attempt.mode is RelayMode.IMAGES_GENERATIONS:
            return body  # `send` answered in OpenAI's format already
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        raise_error(data)
        if attempt.mode is RelayMode.EMBEDDINGS:
            encoding = client_payload(attempt).get("encoding_format")
            return orjson.dumps(convert_embedding_response(data, attempt.model, encoding))
        return orjson.dumps(convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        n = client_payload(attempt).get("n")
        return AliStream(
            client_wants_usage=client_wants_usage,
            model=attempt.model,
            choices=n if isinstance(n, int) and n > 1 else 1,
        )
