"""Google's Gemini API, converted to and from OpenAI's chat completions and embeddings.

Chat requests become `models/{model}:generateContent` bodies (`contents` of user and model
turns, the system prompt apart, function declarations, a generation config and safety
settings); streams use `:streamGenerateContent?alt=sse`, whose every event is a whole
GenerateContentResponse. Embeddings go to `:batchEmbedContents`, one request per input.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from django.conf import settings

from relay import images
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import client_payload, encode_embedding
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME

BETA_VERSION = "v1beta"
# Models Google serves on v1beta only (or first): the 2.x/3.x families and experiments.
BETA_MODEL_PREFIXES = ("gemini-2", "gemini-3", "gemini-exp")
# A version already in the channel's base URL (`.../v1beta`) is replaced by the chosen one.
VERSION_SUFFIX = re.compile(r"/v\d+(?:alpha|beta)?\d*$")
SAFETY_CATEGORIES = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
    "HARM_CATEGORY_CIVIC_INTEGRITY",
)
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}
SYSTEM_ROLES = frozenset({"system", "developer"})
TOOL_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
JSON_FORMATS = frozenset({"json_object", "json_schema"})
DEFAULT_IMAGE_MIME = "image/jpeg"
# `data:<type>[;param=value...];base64,<data>`
DATA_URL = re.compile(
    r"^data:(?P<media_type>[\w.+-]+/[\w.+-]+)(?:;[^;,]*)*;base64,(?P<data>.*)$", re.DOTALL
)
# JSON-schema keywords Gemini's OpenAPI-subset Schema refuses ("Unknown name ...").
UNSUPPORTED_SCHEMA_KEYS = frozenset(
    {
        "$schema",
        "$id",
        "$ref",
        "$defs",
        "$comment",
        "definitions",
        "additionalProperties",
        "patternProperties",
        "unevaluatedProperties",
        "dependentRequired",
        "dependentSchemas",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "uniqueItems",
        "contentEncoding",
        "contentMediaType",
        "examples",
        "strict",
        "allOf",
        "prefixItems",
        "if",
        "then",
        "else",
        "not",
        "readOnly",
        "writeOnly",
        "deprecated",
    }
)
# Gemini accepts only these `format`s on strings and rejects the request otherwise.
STRING_FORMATS = frozenset({"enum", "date-time"})

Part = dict[str, Any]


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def unsupported_content(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_content")


# ---------------------------------------------------------------------- request parts


def guess_mime_type(url: str) -> str:
    guessed, _ = mimetypes.guess_type(urlsplit(url).path)
    return guessed or DEFAULT_IMAGE_MIME


def inline_or_file_part(url: str, what: str) -> Part:
    match = DATA_URL.match(url)
    if match:
        return {"inlineData": {"mimeType": match["media_type"], "data": match["data"]}}
    if url.startswith(("http://", "https://")):
        return {"fileData": {"mimeType": guess_mime_type(url), "fileUri": url}}
    raise RelayError(
        400, f"{what} URLs must be base64 data: URLs or http(s) URLs", code="invalid_image_url"
    )


def image_part(part: dict[str, Any]) -> Part:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise RelayError(400, "image_url part without a url", code="invalid_image_url")
    # Gemini reads no arbitrary URL: http(s) images go inline, fetched by `prepare` (One
    # API downloads them too); a body built without it passes the URL as fileData.
    image = images.inlined(url)
    if image is not None:
        return {"inlineData": {"mimeType": image.media_type, "data": image.data}}
    return inline_or_file_part(url, "image")


def audio_part(part: dict[str, Any]) -> Part:
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not audio.get("data"):
        raise unsupported_content("input_audio part without data")
    audio_format = str(audio.get("format") or "wav")
    return {"inlineData": {"mimeType": f"audio/{audio_format}", "data": str(audio["data"])}}


def file_part(part: dict[str, Any]) -> Part:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str) or not data:
        raise unsupported_content("file parts need file_data (uploaded file ids are not kept)")
    return inline_or_file_part(data, "file")


PART_CONVERTERS = {"image_url": image_part, "input_audio": audio_part, "file": file_part}


def content_parts(content: Any) -> list[Part]:
    """OpenAI message content (a string or parts) as Gemini parts, empty text dropped
    (Gemini refuses a request with an empty text parameter)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        return [{"text": str(content)}]
    parts: list[Part] = []
    for part in content:
        if isinstance(part, str):
            part = {"type": "text", "text": part}
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": str(part["text"])})
        elif kind in PART_CONVERTERS:
            parts.append(PART_CONVERTERS[kind](part))
        else:
            raise unsupported_content(
                f"content part type {kind!r} is not supported by channel type Gemini"
            )
    return parts


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Gemini wants an object; a model's broken arguments echoed back must not fail the turn."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments or "{}")
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def function_call_part(call: dict[str, Any]) -> Part | None:
    function = call.get("function")
    if not isinstance(function, dict) or not function.get("name"):
        return None
    return {
        "functionCall": {
            "name": str(function["name"]),
            "args": parse_arguments(function.get("arguments")),
        }
    }


def tool_result_content(content: Any) -> Any:
    """A tool's output: its JSON when it is an object or array, else the text itself."""
    if isinstance(content, list):
        content = "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    if not isinstance(content, str):
        return content if content is not None else ""
    try:
        parsed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content
    return parsed if isinstance(parsed, dict | list) else content


def function_response_part(message: dict[str, Any], call_names: dict[str, str]) -> Part:
    # Gemini matches results to calls by function name; OpenAI only gives the call id.
    call_id = str(message.get("tool_call_id") or "")
    name = call_names.get(call_id) or str(message.get("name") or "")
    return {
        "functionResponse": {
            "name": name,
            "response": {"name": name, "content": tool_result_content(message.get("content"))},
        }
    }


def message_parts(message: dict[str, Any], call_names: dict[str, str]) -> tuple[str, list[Part]]:
    """(Gemini role, parts) of one non-system OpenAI message; remembers the names of the
    tool calls it makes so later tool results can name their function."""
    role = message.get("role")
    if role in ("tool", "function"):
        return "user", [function_response_part(message, call_names)]
    parts = content_parts(message.get("content"))
    if role != "assistant":
        return "user", parts
    for call in message.get("tool_calls") or ():
        part = function_call_part(call) if isinstance(call, dict) else None
        if part is not None:
            call_names[str(call.get("id") or "")] = part["functionCall"]["name"]
            parts.append(part)
    legacy_call = message.get("function_call")
    if isinstance(legacy_call, dict):
        part = function_call_part({"function": legacy_call})
        if part is not None:
            parts.append(part)
    return "model", parts


def merge_contents(turns: list[tuple[str, list[Part]]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role (parallel tool results, a result then a remark) become
    one content; turns without parts are dropped (Gemini refuses empty contents)."""
    merged: list[dict[str, Any]] = []
    for role, parts in turns:
        if not parts:
            continue
        if merged and merged[-1]["role"] == role:
            merged[-1]["parts"].extend(parts)
        else:
            merged.append({"role": role, "parts": list(parts)})
    return merged


def system_parts(messages: list[Any]) -> list[Part]:
    parts: list[Part] = []
    for message in messages:
        if isinstance(message, dict) and message.get("role") in SYSTEM_ROLES:
            parts.extend(content_parts(message.get("content")))
    return parts


# ---------------------------------------------------------------------- tools and config


def clean_schema(schema: Any) -> Any:
    """A JSON schema Gemini accepts: unknown keywords dropped, `type: [x, "null"]` turned
    into `nullable`, `const` into a one-value enum, oneOf into anyOf. Property names are
    left alone."""
    if isinstance(schema, list):
        return [clean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key in UNSUPPORTED_SCHEMA_KEYS:
            continue
        if key == "properties" and isinstance(value, dict):
            cleaned[key] = {name: clean_schema(sub) for name, sub in value.items()}
        elif key == "items":
            cleaned[key] = clean_schema(value)
        elif key in ("anyOf", "oneOf"):
            # Gemini knows only anyOf, the nearest when constraining what is generated.
            cleaned["anyOf"] = clean_schema(value)
        elif key == "const":
            if isinstance(value, str):
                cleaned["enum"] = [value]
        else:
            cleaned[key] = value
    kind = cleaned.get("type")
    if isinstance(kind, list):
        types = [t for t in kind if t != "null"]
        cleaned["type"] = types[0] if types else "string"
        if "null" in kind:
            cleaned["nullable"] = True
    if cleaned.get("type") == "string" and cleaned.get("format") not in (None, *STRING_FORMATS):
        del cleaned["format"]
    return cleaned


def function_declaration(function: dict[str, Any]) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function.get("name")}
    if function.get("description"):
        declaration["description"] = function["description"]
    parameters = clean_schema(function.get("parameters"))
    # Gemini refuses an OBJECT schema without properties: a function without arguments
    # must leave `parameters` out.
    if isinstance(parameters, dict) and (
        parameters.get("properties") or parameters.get("type") not in (None, "object")
    ):
        declaration["parameters"] = parameters
    return declaration


def convert_tools(payload: dict[str, Any]) -> list[dict[str, Any]]:
    functions: list[Any] = []
    for tool in payload.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type", "function") == "function":
            functions.append(tool.get("function"))
    if not functions:
        functions = list(payload.get("functions") or ())  # the legacy field
    declarations = [
        function_declaration(function)
        for function in functions
        if isinstance(function, dict) and function.get("name")
    ]
    return [{"functionDeclarations": declarations}] if declarations else []


def tool_config(choice: Any) -> dict[str, Any] | None:
    config: dict[str, Any] | None = None
    if isinstance(choice, str) and choice in TOOL_MODES:
        config = {"mode": TOOL_MODES[choice]}
    elif isinstance(choice, dict):
        # {"type": "function", "function": {"name"}} or the legacy {"name"}
        function = choice.get("function") if isinstance(choice.get("function"), dict) else choice
        if function.get("name"):
            config = {"mode": "ANY", "allowedFunctionNames": [str(function["name"])]}
    return {"functionCallingConfig": config} if config is not None else None


def stop_sequences(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list):
        return [item for item in stop if isinstance(item, str) and item]
    return []


def response_format_config(response_format: Any) -> dict[str, Any]:
    if not isinstance(response_format, dict) or response_format.get("type") not in JSON_FORMATS:
        return {}
    config: dict[str, Any] = {"responseMimeType": "application/json"}
    json_schema = response_format.get("json_schema")
    if isinstance(json_schema, dict) and isinstance(json_schema.get("schema"), dict):
        config["responseSchema"] = clean_schema(json_schema["schema"])
    return config


def generation_config(payload: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for source, target in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        if isinstance(payload.get(source), int | float):
            config[target] = payload[source]
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        config["maxOutputTokens"] = max_tokens
    stops = stop_sequences(payload.get("stop"))
    if stops:
        config["stopSequences"] = stops
    if isinstance(payload.get("n"), int) and payload["n"] > 0:
        config["candidateCount"] = payload["n"]
    config.update(response_format_config(payload.get("response_format")))
    return config


def safety_settings() -> list[dict[str, str]]:
    threshold = settings.GEMINI_SAFETY_SETTING
    return [{"category": category, "threshold": threshold} for category in SAFETY_CATEGORIES]


def convert_request(payload: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request as a Gemini GenerateContentRequest."""
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    call_names: dict[str, str] = {}
    contents = merge_contents(
        [
            message_parts(message, call_names)
            for message in messages
            if isinstance(message, dict) and message.get("role") not in SYSTEM_ROLES
        ]
    )
    request: dict[str, Any] = {}
    system = system_parts(messages)
    if system and contents:
        request["systemInstruction"] = {"parts": system}
    elif system:
        contents = [{"role": "user", "parts": system}]  # Gemini needs at least one content
    request["contents"] = contents
    tools = convert_tools(payload)
    if tools:
        request["tools"] = tools
        config = tool_config(payload.get("tool_choice", payload.get("function_call")))
        if config is not None:
            request["toolConfig"] = config
    request["safetySettings"] = safety_settings()
    config = generation_config(payload)
    if config:
        request["generationConfig"] = config
    return request


# ---------------------------------------------------------------------- embeddings


def embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise unsupported_content("channel type Gemini embeds strings only, not token arrays")


def convert_embedding_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI embeddings request as a Gemini BatchEmbedContentsRequest."""
    dimensions = payload.get("dimensions")
    requests: list[dict[str, Any]] = []
    for text in embedding_inputs(payload.get("input")):
        request: dict[str, Any] = {
            "model": f"models/{model}",
            "content": {"parts": [{"text": text}]},
        }
        if isinstance(dimensions, int) and dimensions > 0:
            request["outputDimensionality"] = dimensions
        requests.append(request)
    return {"requests": requests}


def convert_embedding_response(
    data: dict[str, Any], model: str, encoding_format: Any = None
) -> dict[str, Any]:
    """Gemini's embeddings as an OpenAI list. `usage` only when Gemini counted tokens (it
    usually does not): the relay then bills by its own rules rather than from zeros."""
    items = []
    for index, embedding in enumerate(data.get("embeddings") or ()):
        values = embedding.get("values") if isinstance(embedding, dict) else None
        vector = values if isinstance(values, list) else []
        items.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_embedding(vector, encoding_format),
            }
        )
    result: dict[str, Any] = {"object": "list", "data": items, "model": model}
    metadata = data.get("usageMetadata")
    prompt = metadata.get("promptTokenCount") if isinstance(metadata, dict) else None
    if isinstance(prompt, int):
        result["usage"] = {"prompt_tokens": prompt, "total_tokens": prompt}
    return result


# ---------------------------------------------------------------------- URL and headers


def needs_beta(request: dict[str, Any], model: str) -> bool:
    """v1 refuses systemInstruction, tools and JSON mode, and lacks the newer models."""
    return (
        "systemInstruction" in request
        or "tools" in request
        or "responseMimeType" in request.get("generationConfig", {})
        or model.startswith(BETA_MODEL_PREFIXES)
    )


def api_version(attempt: Attempt, request: dict[str, Any]) -> str:
    pinned = attempt.channel.config.get("api_version")
    if isinstance(pinned, str) and pinned:
        return pinned
    default = settings.GEMINI_VERSION
    return BETA_VERSION if default == "v1" and needs_beta(request, attempt.model) else default


def request_url(attempt: Attempt, version: str, action: str) -> str:
    root = VERSION_SUFFIX.sub("", base_url(attempt))
    return f"{root}/{version}/models/{attempt.model}:{action}"


def request_headers(attempt: Attempt) -> dict[str, str]:
    return {
        "x-goog-api-key": attempt.channel.key,
        "content-type": "application/json",
        "accept": "text/event-stream" if attempt.stream else "application/json",
    }


# ---------------------------------------------------------------------- response


def openai_usage(metadata: Any) -> dict[str, Any] | None:
    """Thoughts are generated tokens and billed as output; tool-use prompts as input."""
    if not isinstance(metadata, dict) or not any(
        isinstance(metadata.get(name), int) for name in ("promptTokenCount", "totalTokenCount")
    ):
        return None  # no counts: the relay counts the text itself

    def count(name: str) -> int:
        value = metadata.get(name)
        return value if isinstance(value, int) else 0

    prompt = count("promptTokenCount") + count("toolUsePromptTokenCount")
    thoughts = count("thoughtsTokenCount")
    completion = count("candidatesTokenCount") + thoughts
    total = metadata.get("totalTokenCount")
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }
    cached = count("cachedContentTokenCount")
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if thoughts:
        usage["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return usage


def finish_reason(reason: Any, has_tool_calls: bool) -> str:
    mapped = FINISH_REASONS.get(reason, "stop") if isinstance(reason, str) else "stop"
    return "tool_calls" if has_tool_calls and mapped == "stop" else mapped


def completion_id(response_id: Any) -> str:
    return f"chatcmpl-{response_id}" if response_id else f"chatcmpl-{time.time_ns()}"


def tool_call(function_call: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {
            "name": str(function_call.get("name") or ""),
            "arguments": orjson.dumps(function_call.get("args") or {}).decode(),
        },
    }


@dataclass
class CandidateParts:
    texts: list[str] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


def split_parts(candidate: dict[str, Any]) -> CandidateParts:
    content = candidate.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    split = CandidateParts()
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("functionCall"), dict):
            split.calls.append(tool_call(part["functionCall"]))
        elif isinstance(part.get("text"), str):
            (split.thoughts if part.get("thought") is True else split.texts).append(part["text"])
    return split


def assistant_message(split: CandidateParts) -> dict[str, Any]:
    text = "".join(split.texts)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text or (None if split.calls else ""),
    }
    if split.thoughts:
        message["reasoning_content"] = "".join(split.thoughts)
    if split.calls:
        message["tool_calls"] = split.calls
    return message


def candidate_choice(candidate: dict[str, Any], position: int) -> dict[str, Any]:
    split = split_parts(candidate)
    index = candidate.get("index")
    return {
        "index": index if isinstance(index, int) else position,
        "message": assistant_message(split),
        "logprobs": None,
        "finish_reason": finish_reason(candidate.get("finishReason"), bool(split.calls)),
    }


def blocked_choice() -> dict[str, Any]:
    """The answer to a prompt Gemini refused outright (promptFeedback.blockReason)."""
    return {
        "index": 0,
        "message": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": "content_filter",
    }


def convert_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A Gemini GenerateContentResponse as an OpenAI chat.completion."""
    candidates = [c for c in data.get("candidates") or () if isinstance(c, dict)]
    choices = [candidate_choice(c, position) for position, c in enumerate(candidates)]
    if not choices:
        feedback = data.get("promptFeedback")
        blocked = isinstance(feedback, dict) and feedback.get("blockReason")
        choices = [blocked_choice()] if blocked else [{**blocked_choice(), "finish_reason": "stop"}]
    result: dict[str, Any] = {
        "id": completion_id(data.get("responseId")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    usage = openai_usage(data.get("usageMetadata"))
    if usage is not None:
        result["usage"] = usage
    return result


# ---------------------------------------------------------------------- stream


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class GeminiStream:
    """Gemini's GenerateContentResponse events in, OpenAI chunks out; one per response.

    Gemini sends no end marker: the stream is over once every candidate carried a
    finishReason, and that is when the usage chunk and `[DONE]` go out."""

    client_wants_usage: bool
    model: str
    candidates: int = 1
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    started: set[int] = field(default_factory=set)  # choices that already sent the role
    finished: set[int] = field(default_factory=set)
    tool_counts: dict[int, int] = field(default_factory=dict)  # choice -> tool calls sent

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:"):
            return None
        try:
            event = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict):
            return None
        usage = openai_usage(event.get("usageMetadata"))
        if usage is not None:
            self.usage = usage  # cumulative: the last one seen is the whole count
        if self.saw_done:
            return None  # nothing may follow [DONE]
        if isinstance(event.get("error"), dict):
            return self._error(event["error"])
        if not self.id:
            self.id = completion_id(event.get("responseId"))
        choices = self._choices(event)
        frames = sse(self._envelope(choices)) if choices else b""
        if len(self.finished) >= self.candidates:
            frames += self._finish()
        return frames or None

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _choices(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        candidates = [c for c in event.get("candidates") or () if isinstance(c, dict)]
        feedback = event.get("promptFeedback")
        if not candidates and isinstance(feedback, dict) and feedback.get("blockReason"):
            self.finished.update(range(self.candidates))
            return [self._choice(0, {"content": ""}, "content_filter")]
        choices = []
        for position, candidate in enumerate(candidates):
            choice = self._candidate_choice(candidate, position)
            if choice is not None:
                choices.append(choice)
        return choices

    def _candidate_choice(self, candidate: dict[str, Any], position: int) -> dict[str, Any] | None:
        index = candidate.get("index")
        index = index if isinstance(index, int) else position
        split = split_parts(candidate)
        delta: dict[str, Any] = {}
        for name, pieces in (("content", split.texts), ("reasoning_content", split.thoughts)):
            text = "".join(pieces)
            if text:
                delta[name] = text
                self.generated.append(text)
        if split.calls:
            delta["tool_calls"] = self._indexed_calls(index, split.calls)
        finish = None
        if candidate.get("finishReason"):
            self.finished.add(index)
            finish = finish_reason(candidate["finishReason"], index in self.tool_counts)
        if not delta and finish is None and index in self.started:
            return None
        return self._choice(index, delta, finish)

    def _indexed_calls(self, index: int, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each Gemini function call arrives whole: one OpenAI tool call, numbered on."""
        first = self.tool_counts.get(index, 0)
        self.tool_counts[index] = first + len(calls)
        for call in calls:
            self.generated += [call["function"]["name"], call["function"]["arguments"]]
        return [{"index": first + i, **call} for i, call in enumerate(calls)]

    def _choice(self, index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        if index not in self.started:
            self.started.add(index)
            delta = {"role": "assistant", **delta}
        return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}

    def _finish(self) -> bytes:
        self.saw_done = True
        frames = b""
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        return frames + DONE_FRAME

    def _error(self, error: dict[str, Any]) -> bytes:
        self.upstream_error = {
            "message": str(error.get("message") or "upstream stream error"),
            "type": UPSTREAM_ERROR,
            "param": None,
            "code": error.get("status") or error.get("code"),
        }
        return sse({"error": self.upstream_error})


# ---------------------------------------------------------------------- adaptor


class GeminiAdaptor(Adaptor):
    async def prepare(self, attempt: Attempt) -> None:
        if attempt.mode is RelayMode.CHAT:
            await images.prefetch_chat_images(attempt.request)

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is RelayMode.CHAT:
            with images.inlining(attempt.request):
                payload = convert_request(body.payload)
            action = "streamGenerateContent?alt=sse" if attempt.stream else "generateContent"
        elif attempt.mode is RelayMode.EMBEDDINGS:
            payload = convert_embedding_request(body.payload, attempt.model)
            action = "batchEmbedContents"
        else:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Gemini"
            )
        url = request_url(attempt, api_version(attempt, payload), action)
        return UpstreamRequest("POST", url, request_headers(attempt), orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Gemini")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
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
        n = client_payload(attempt).get("n")
        return GeminiStream(
            client_wants_usage=client_wants_usage,
            model=attempt.model,
            candidates=n if isinstance(n, int) and n > 1 else 1,
        )
