from __future__ import annotations

import hashlib
import json
import secrets
import string
import struct
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake Gemini upstream: a real HTTP server speaking the Generative Language API.
#
#     with FakeGemini(api_key="gemini-key") as fake:
#         fake.scenario = "thinking"
#         ...  # point the gateway at fake.base_url
#         assert fake.last_request.version == "v1beta"
#
# Routes are Google's: POST /{version}/models/{model}:generateContent,
# :streamGenerateContent (?alt=sse for server-sent events, a JSON array otherwise) and
# :batchEmbedContents. It is as strict as generativelanguage.googleapis.com where a
# converting gateway can go wrong: the x-goog-api-key header, fields v1 does not know
# (systemInstruction, tools, JSON mode), models only served on v1beta, empty contents,
# parts or text, roles other than user/model, JSON-schema keywords outside Gemini's Schema,
# function declarations with empty OBJECT parameters, unknown safety categories. Errors have
# Google's shape, `{"error": {"code", "message", "status", "details"?}}`. Like the other
# fakes it runs its own event loop in a daemon thread.

__all__ = [
    "BETA_ONLY_MODELS",
    "CHAT_MODELS",
    "EMBEDDING_MODELS",
    "ERROR_SCENARIOS",
    "SCENARIOS",
    "FakeGemini",
    "RecordedRequest",
    "gemini_vector",
]

# Scenarios that answer with an HTTP error once the request passed validation.
ERROR_SCENARIOS = frozenset({"error_429", "error_500", "error_503"})
SCENARIOS = ERROR_SCENARIOS | {
    "ok",
    "thinking",
    "max_tokens",
    "blocked",
    "safety",
    "error_mid_stream",
}

CHAT_MODELS = frozenset(
    {"gemini-1.5-flash", "gemini-1.5-pro", "gemini-2.0-flash", "gemini-2.0-flash-thinking-exp"}
)
EMBEDDING_MODELS = frozenset({"text-embedding-004", "gemini-embedding-001"})
# Served on v1beta only: v1 answers 404 NOT_FOUND for them, as Google did at their launch.
BETA_ONLY_MODELS = frozenset({"gemini-2.0-flash", "gemini-2.0-flash-thinking-exp"})
VERSIONS = ("v1", "v1beta")
METHODS = frozenset({"generateContent", "streamGenerateContent", "batchEmbedContents"})

REQUEST_FIELDS = {
    "v1": frozenset({"model", "contents", "safetySettings", "generationConfig", "cachedContent"}),
    "v1beta": frozenset(
        {
            "model",
            "contents",
            "systemInstruction",
            "tools",
            "toolConfig",
            "safetySettings",
            "generationConfig",
            "cachedContent",
        }
    ),
}
_V1_GENERATION_FIELDS = frozenset(
    {
        "stopSequences",
        "candidateCount",
        "maxOutputTokens",
        "temperature",
        "topP",
        "topK",
        "seed",
        "presencePenalty",
        "frequencyPenalty",
        "responseLogprobs",
        "logprobs",
    }
)
GENERATION_FIELDS = {
    "v1": _V1_GENERATION_FIELDS,
    "v1beta": _V1_GENERATION_FIELDS
    | {"responseMimeType", "responseSchema", "thinkingConfig", "responseModalities"},
}
SCHEMA_FIELDS = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "anyOf",
        "propertyOrdering",
        "default",
        "items",
        "minimum",
        "maximum",
    }
)
PART_DATA_FIELDS = frozenset(
    {"text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode"}
)
SAFETY_CATEGORIES = frozenset(
    {
        "HARM_CATEGORY_HARASSMENT",
        "HARM_CATEGORY_HATE_SPEECH",
        "HARM_CATEGORY_SEXUALLY_EXPLICIT",
        "HARM_CATEGORY_DANGEROUS_CONTENT",
        "HARM_CATEGORY_CIVIC_INTEGRITY",
    }
)
SAFETY_THRESHOLDS = frozenset(
    {
        "HARM_BLOCK_THRESHOLD_UNSPECIFIED",
        "BLOCK_LOW_AND_ABOVE",
        "BLOCK_MEDIUM_AND_ABOVE",
        "BLOCK_ONLY_HIGH",
        "BLOCK_NONE",
        "OFF",
    }
)
CALLING_MODES = frozenset({"MODE_UNSPECIFIED", "AUTO", "ANY", "NONE", "VALIDATED"})

_ID_ALPHABET = string.ascii_letters + string.digits
_SAFE_RATINGS = [
    {"category": category, "probability": "NEGLIGIBLE"} for category in sorted(SAFETY_CATEGORIES)
]


class InvalidArgument(Exception):
    """A request Google would refuse with 400 INVALID_ARGUMENT."""

    def __init__(self, message: str, *, unknown_field: bool = False) -> None:
        super().__init__(message)
        self.unknown_field = unknown_field


class NotFound(Exception):
    """A model or method Google answers with 404 NOT_FOUND."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: dict[str, Any] | None = None

    @property
    def version(self) -> str:
        return self.path.split("/")[1]

    @property
    def model(self) -> str:
        return self.path.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def action(self) -> str:
        return self.path.rsplit(":", 1)[-1]


def _rand_id(length: int = 22) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def google_error(
    code: int, status: str, message: str, details: list[Any] | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def gemini_vector(text: str, dimensions: int) -> list[float]:
    """The deterministic unit-length vector the fake returns for one text."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    ints = struct.unpack(f"<{dimensions}I", raw)
    values = [i / 0xFFFFFFFF * 2.0 - 1.0 for i in ints]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    normalised = [v / norm for v in values]
    # Through float32, so a base64 encoding decodes to exactly these numbers.
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *normalised)))


# ---------------------------------------------------------------------- validation


def _unknown(name: str, where: str = "") -> InvalidArgument:
    at = f" at '{where}'" if where else ""
    return InvalidArgument(
        f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.',
        unknown_field=True,
    )


def _check_schema(schema: Any, where: str) -> None:
    if not isinstance(schema, dict):
        raise InvalidArgument(f"* GenerateContentRequest.{where}: schema must be an object")
    for key in schema:
        if key not in SCHEMA_FIELDS:
            raise _unknown(key, where)
    kind = schema.get("type")
    if kind is not None and not isinstance(kind, str):
        raise InvalidArgument(
            f"Invalid JSON payload received. Proto field is not repeating, cannot start list. "
            f"at '{where}.type'"
        )
    if isinstance(kind, str) and kind.upper() == "OBJECT" and not schema.get("properties"):
        raise InvalidArgument(
            f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type"
        )
    string_format = schema.get("format") if str(kind).upper() == "STRING" else None
    if string_format not in (None, "enum", "date-time"):
        raise InvalidArgument(
            f"* GenerateContentRequest.{where}.format: only 'enum' and 'date-time' are "
            "supported for STRING type"
        )
    for name, sub in (schema.get("properties") or {}).items():
        _check_schema(sub, f"{where}.properties[{name}].value")
    if "items" in schema:
        _check_schema(schema["items"], f"{where}.items")
    for i, sub in enumerate(schema.get("anyOf") or ()):
        _check_schema(sub, f"{where}.any_of[{i}]")


def _check_part(part: Any, role: str, where: str) -> None:
    if not isinstance(part, dict):
        raise InvalidArgument(f"* GenerateContentRequest.{where}: part must be an object")
    data = [key for key in part if key in PART_DATA_FIELDS]
    for key in part:
        if key not in PART_DATA_FIELDS and key not in ("thought", "thoughtSignature"):
            raise _unknown(key, where)
    if len(data) != 1:
        raise InvalidArgument(f"* GenerateContentRequest.{where}.data: required oneof field")
    kind = data[0]
    if kind == "text" and (not isinstance(part["text"], str) or not part["text"]):
        raise InvalidArgument(
            "Unable to submit request because it has an empty text parameter. "
            "Add a value to the parameter and try again."
        )
    if kind in ("inlineData", "fileData"):
        blob = part[kind]
        needed = ("mimeType", "data") if kind == "inlineData" else ("mimeType", "fileUri")
        for name in needed:
            if not isinstance(blob, dict) or not blob.get(name):
                raise InvalidArgument(f"* GenerateContentRequest.{where}.{kind}.{name}: required")
    if kind == "functionCall" and role != "model":
        raise InvalidArgument(
            f"* GenerateContentRequest.{where}: function_call parts are only allowed in model turns"
        )
    if kind in ("functionCall", "functionResponse"):
        call = part[kind]
        if not isinstance(call, dict) or not call.get("name"):
            raise InvalidArgument(
                f"* GenerateContentRequest.{where}.{kind}.name: Name cannot be empty."
            )
    if kind == "functionResponse" and not isinstance(part[kind].get("response"), dict):
        raise InvalidArgument(f"* GenerateContentRequest.{where}.functionResponse.response")


def _check_content(content: Any, where: str, *, system: bool = False) -> None:
    if not isinstance(content, dict):
        raise InvalidArgument(f"* GenerateContentRequest.{where}: content must be an object")
    role = content.get("role", "" if system else "user")
    if not system and role not in ("user", "model"):
        raise InvalidArgument(
            f"* GenerateContentRequest.{where}.role: Please use a valid role: user, model."
        )
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise InvalidArgument(
            f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty."
        )
    for j, part in enumerate(parts):
        _check_part(part, role, f"{where}.parts[{j}]")


def _check_tools(tools: Any) -> None:
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        for j, declaration in enumerate((tool or {}).get("functionDeclarations") or ()):
            where = f"tools[{i}].function_declarations[{j}]"
            if not isinstance(declaration, dict) or not declaration.get("name"):
                raise InvalidArgument(
                    f"* GenerateContentRequest.{where}.name: Name cannot be empty."
                )
            if "parameters" in declaration:
                _check_schema(declaration["parameters"], f"{where}.parameters")


def _check_tool_config(config: Any) -> None:
    calling = (config or {}).get("functionCallingConfig") or {}
    if calling.get("mode", "AUTO") not in CALLING_MODES:
        raise InvalidArgument(
            "Invalid value at 'tool_config.function_calling_config.mode', "
            f'"{calling.get("mode")}"'
        )
    if calling.get("allowedFunctionNames") and calling.get("mode") != "ANY":
        raise InvalidArgument(
            "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names:"
            " allowed_function_names may only be set when mode is ANY."
        )


def _check_safety(settings: Any) -> None:
    for i, setting in enumerate(settings if isinstance(settings, list) else ()):
        if setting.get("category") not in SAFETY_CATEGORIES:
            raise InvalidArgument(
                f"Invalid value at 'safety_settings[{i}].category', \"{setting.get('category')}\""
            )
        if setting.get("threshold") not in SAFETY_THRESHOLDS:
            raise InvalidArgument(
                f"Invalid value at 'safety_settings[{i}].threshold', \"{setting.get('threshold')}\""
            )


def validate_generate(payload: dict[str, Any], version: str) -> None:
    for key in payload:
        if key not in REQUEST_FIELDS[version]:
            raise _unknown(key)
    for key in payload.get("generationConfig") or {}:
        if key not in GENERATION_FIELDS[version]:
            raise _unknown(key, "generation_config")
    contents = payload.get("contents")
    if not isinstance(contents, list) or not contents:
        raise InvalidArgument("* GenerateContentRequest.contents: contents is not specified")
    for i, content in enumerate(contents):
        _check_content(content, f"contents[{i}]")
    if "systemInstruction" in payload:
        _check_content(payload["systemInstruction"], "system_instruction", system=True)
    _check_tools(payload.get("tools"))
    _check_tool_config(payload.get("toolConfig"))
    _check_safety(payload.get("safetySettings"))
    schema = (payload.get("generationConfig") or {}).get("responseSchema")
    if schema is not None:
        _check_schema(schema, "generation_config.response_schema")


def validate_embed(payload: dict[str, Any], model: str) -> None:
    requests = payload.get("requests")
    if not isinstance(requests, list) or not requests:
        raise InvalidArgument("* BatchEmbedContentsRequest.requests: requests is not specified")
    for i, request in enumerate(requests):
        if not isinstance(request, dict) or request.get("model") != f"models/{model}":
            raise InvalidArgument(
                f"* BatchEmbedContentsRequest.requests[{i}].model: The model in the request "
                f"must be models/{model}, the one in the URL."
            )
        parts = (request.get("content") or {}).get("parts")
        if not isinstance(parts, list) or not parts:
            raise InvalidArgument(
                f"* BatchEmbedContentsRequest.requests[{i}].content.parts: "
                "contents.parts must not be empty."
            )


# ---------------------------------------------------------------------- server


class FakeGemini(FakeServer[RecordedRequest]):
    """A local Generative Language API with switchable scenarios.

    Public attributes may be changed from the test thread at any time; the server reads
    them when the next request arrives."""

    scenarios = SCENARIOS
    thread_name = "fake-gemini"

    def __init__(
        self,
        api_key: str | None = "gemini-key",
        reply: str = "Hello from fake Gemini.",
        prompt_tokens: int = 11,
        candidates_tokens: int = 7,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.api_key = api_key
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.candidates_tokens = candidates_tokens
        self.thoughts_tokens = 5  # reported in the thinking scenario only
        self.thought = "The user greets me; I should greet back."
        self.function_args: dict[str, Any] = {"location": "Paris", "unit": "celsius"}
        self.embedding_dimensions = 768

    # ------------------------------------------------------------------ request entry

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        target = self._target(recorded)
        if target is None:
            return self._error(404, "NOT_FOUND", f"Method not found: {recorded.path}")
        version, model, method = target
        denied = self._check_key(recorded)
        if denied is not None:
            return denied
        if recorded.json is None:
            return self._error(
                400, "INVALID_ARGUMENT", "Invalid JSON payload received. Unexpected token."
            )
        try:
            self._check_model(version, model, method)
            if method == "batchEmbedContents":
                validate_embed(recorded.json, model)
            else:
                validate_generate(recorded.json, version)
        except NotFound as error:
            return self._error(404, "NOT_FOUND", str(error))
        except InvalidArgument as error:
            return self._invalid(error)
        if scenario in ERROR_SCENARIOS:
            return self._scenario_error(scenario)
        if method == "batchEmbedContents":
            return self._json(self._embeddings(recorded.json))
        if method == "streamGenerateContent":
            return await self._stream(request, recorded, model, scenario)
        return self._json(self._response(recorded.json, model, scenario))

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        query = dict(request.query)
        headers = lower_headers(request)
        return RecordedRequest(
            request.method, request.path, query, headers, body, json_object(body)
        )

    @staticmethod
    def _target(recorded: RecordedRequest) -> tuple[str, str, str] | None:
        """(version, model, method) of `POST /{version}/models/{model}:{method}`."""
        segments = recorded.path.split("/")
        if recorded.method != "POST" or len(segments) != 4 or segments[2] != "models":
            return None
        model, _, method = segments[3].partition(":")
        if segments[1] not in VERSIONS or method not in METHODS or not model:
            return None
        return segments[1], model, method

    def _check_key(self, recorded: RecordedRequest) -> web.Response | None:
        key = recorded.headers.get("x-goog-api-key") or recorded.query.get("key")
        if self.api_key is None:
            return None
        if not key:
            return self._error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if key != self.api_key:
            message = "API key not valid. Please pass a valid API key."
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": message,
                },
            ]
            return self._error(400, "INVALID_ARGUMENT", message, details)
        return None

    @staticmethod
    def _check_model(version: str, model: str, method: str) -> None:
        known = EMBEDDING_MODELS if method == "batchEmbedContents" else CHAT_MODELS
        if model not in known or (version == "v1" and model in BETA_ONLY_MODELS):
            raise NotFound(
                f"models/{model} is not found for API version {version}, or is not supported "
                f"for {method}. Call ListModels to see the list of available models and their "
                "supported methods."
            )

    # ------------------------------------------------------------------ responses

    def _json(self, data: Any, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(data).encode(),
            headers={"Content-Type": "application/json; charset=UTF-8"},
        )

    def _error(
        self, code: int, status: str, message: str, details: list[Any] | None = None
    ) -> web.Response:
        return self._json(google_error(code, status, message, details), code)

    def _invalid(self, error: InvalidArgument) -> web.Response:
        details = None
        if error.unknown_field:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"description": str(error)}],
                }
            ]
        return self._error(400, "INVALID_ARGUMENT", str(error), details)

    def _scenario_error(self, scenario: str) -> web.Response:
        if scenario == "error_429":
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "38s"},
            ]
            return self._error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
                details,
            )
        if scenario == "error_503":
            return self._error(
                503, "UNAVAILABLE", "The model is overloaded. Please try again later."
            )
        return self._error(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        )

    def _usage(self, candidates_tokens: int, scenario: str) -> dict[str, Any]:
        thoughts = self.thoughts_tokens if scenario == "thinking" else 0
        usage: dict[str, Any] = {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": candidates_tokens,
            "totalTokenCount": self.prompt_tokens + candidates_tokens + thoughts,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": self.prompt_tokens}],
        }
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
        return usage

    @staticmethod
    def _function_name(payload: dict[str, Any]) -> str | None:
        """The function Gemini calls: an allowed one, else the first declared, unless calling
        is off or the last turn already answers a call."""
        declarations = [
            d for tool in payload.get("tools") or () for d in tool.get("functionDeclarations") or ()
        ]
        calling = (payload.get("toolConfig") or {}).get("functionCallingConfig") or {}
        last = payload["contents"][-1]
        answered = any("functionResponse" in part for part in last["parts"])
        if not declarations or calling.get("mode") == "NONE" or answered:
            return None
        allowed = calling.get("allowedFunctionNames")
        return str(allowed[0]) if allowed else str(declarations[0]["name"])

    def _parts(self, payload: dict[str, Any], scenario: str) -> tuple[list[Any], str]:
        """(parts, finishReason) of one candidate's answer to `payload`."""
        parts: list[dict[str, Any]] = []
        if scenario == "thinking":
            parts.append({"text": self.thought, "thought": True})
        function = self._function_name(payload)
        if function is not None:
            parts.append({"functionCall": {"name": function, "args": self.function_args}})
            return parts, "STOP"
        text, reason = self.reply, "STOP"
        config = payload.get("generationConfig") or {}
        for sequence in config.get("stopSequences") or ():
            if sequence in text:
                text = text[: text.index(sequence)]
                break
        if scenario == "max_tokens":
            text, reason = text[: len(text) // 2], "MAX_TOKENS"
        parts.append({"text": text})
        return parts, reason

    def _candidates(self, payload: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
        count = (payload.get("generationConfig") or {}).get("candidateCount") or 1
        if scenario == "safety":
            ratings = [dict(r) for r in _SAFE_RATINGS]
            ratings[0] = {**ratings[0], "probability": "HIGH", "blocked": True}
            return [{"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}]
        candidates = []
        for index in range(count):
            parts, reason = self._parts(payload, scenario)
            candidates.append(
                {
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": reason,
                    "index": index,
                    "safetyRatings": _SAFE_RATINGS,
                }
            )
        return candidates

    def _response(self, payload: dict[str, Any], model: str, scenario: str) -> dict[str, Any]:
        common = {"modelVersion": f"{model}-001", "responseId": _rand_id()}
        if scenario == "blocked":
            return {
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": _SAFE_RATINGS},
                "usageMetadata": {
                    "promptTokenCount": self.prompt_tokens,
                    "totalTokenCount": self.prompt_tokens,
                },
                **common,
            }
        candidates = self._candidates(payload, scenario)
        tokens = self.candidates_tokens * len(candidates) if scenario != "safety" else 0
        return {"candidates": candidates, "usageMetadata": self._usage(tokens, scenario), **common}

    def _embeddings(self, payload: dict[str, Any]) -> dict[str, Any]:
        embeddings = []
        for request in payload["requests"]:
            text = "".join(str(p.get("text") or "") for p in request["content"]["parts"])
            size = request.get("outputDimensionality") or self.embedding_dimensions
            embeddings.append({"values": gemini_vector(text, size)})
        return {"embeddings": embeddings}

    # ------------------------------------------------------------------ streaming

    def _stream_events(
        self, payload: dict[str, Any], model: str, scenario: str
    ) -> list[dict[str, Any]]:
        """Every GenerateContentResponse of a stream: the thought, then the text in pieces,
        the last one with finishReason; usageMetadata on each, growing to the final count."""
        whole = self._response(payload, model, scenario)
        if "candidates" not in whole:
            return [whole]
        common = {"modelVersion": whole["modelVersion"], "responseId": whole["responseId"]}
        candidate = whole["candidates"][0]
        if len(whole["candidates"]) > 1 or "content" not in candidate:
            return [whole]  # several candidates or none to split: one event, as Google does
        pieces: list[dict[str, Any]] = []
        for part in candidate["content"]["parts"]:
            if "text" in part and not part.get("thought"):
                pieces += [{"text": piece} for piece in _split(part["text"])]
            else:
                pieces.append(part)
        events = []
        for i, part in enumerate(pieces):
            last = i == len(pieces) - 1
            event_candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}}
            if last:
                event_candidate["finishReason"] = candidate["finishReason"]
            event_candidate["index"] = 0
            tokens = self.candidates_tokens if last else i + 1
            usage = self._usage(tokens, scenario if last else "ok")
            events.append({"candidates": [event_candidate], "usageMetadata": usage, **common})
        return events

    async def _stream(
        self, request: web.Request, recorded: RecordedRequest, model: str, scenario: str
    ) -> web.StreamResponse:
        assert recorded.json is not None
        events = self._stream_events(recorded.json, model, scenario)
        if recorded.query.get("alt") != "sse":
            return self._json(events)  # without alt=sse Google streams one JSON array
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        for i, event in enumerate(events):
            if scenario == "error_mid_stream" and i == 2:
                error = google_error(500, "INTERNAL", "An internal error has occurred.")
                await response.write(f"data: {json.dumps(error)}\r\n\r\n".encode())
                break
            await response.write(
                f"data: {json.dumps(event, separators=(',', ':'))}\r\n\r\n".encode()
            )
        await response.write_eof()
        return response
