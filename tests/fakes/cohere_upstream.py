from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.gemini_upstream import gemini_vector
from tests.fakes.server import FakeServer, RecordedRequest, json_response
from tests.fakes.vertex_upstream import split_text

# A fake Cohere API (v1 Chat and Embed), over real HTTP.
#
#     with FakeCohere(api_key="co-key") as fake:
#         ...  # a Cohere channel with fake.base_url
#         assert fake.last_request.json["connectors"] == [{"id": "web-search"}]
#
# Routes: POST /v1/chat and POST /v1/embed, `Authorization: Bearer <key>`. As strict as
# api.cohere.ai where a converting gateway can go wrong: unknown fields, a `message` (empty
# only beside `tool_results`), chat_history roles USER/CHATBOT/SYSTEM/TOOL and their fields,
# `p` in [0.01, 0.99], `k` in [0, 500], penalties in [0, 1], at most 5 stop sequences,
# tool_results only with tools, `input_type` for embed-v3 models. A stream is newline-
# delimited JSON events (`application/stream+json`): stream-start, text-generation...,
# tool-calls-generation, stream-end with the whole response; with `Accepts:
# text/event-stream` the same events as SSE. Errors are `{"message": ...}`.

__all__ = ["CHAT_MODELS", "EMBEDDING_MODELS", "SCENARIOS", "FakeCohere"]

CHAT_MODELS = frozenset({"command-r", "command-r-plus", "command", "command-light"})
EMBEDDING_MODELS = frozenset({"embed-english-v3.0", "embed-multilingual-v3.0"})
ERROR_SCENARIOS = frozenset({"error_429", "error_500"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "max_tokens", "error_mid_stream"}
CHAT_FIELDS = frozenset(
    {
        "message",
        "model",
        "stream",
        "preamble",
        "chat_history",
        "conversation_id",
        "prompt_truncation",
        "connectors",
        "search_queries_only",
        "documents",
        "citation_quality",
        "temperature",
        "max_tokens",
        "max_input_tokens",
        "k",
        "p",
        "seed",
        "stop_sequences",
        "frequency_penalty",
        "presence_penalty",
        "raw_prompting",
        "tools",
        "tool_results",
        "force_single_step",
        "response_format",
        "safety_mode",
    }
)
EMBED_FIELDS = frozenset({"texts", "model", "input_type", "embedding_types", "truncate", "images"})
HISTORY_ROLES = frozenset({"USER", "CHATBOT", "SYSTEM", "TOOL"})


class Invalid(Exception):
    pass


def _range(payload: dict[str, Any], name: str, low: float, high: float) -> None:
    value = payload.get(name)
    if value is not None and (not isinstance(value, int | float) or not low <= value <= high):
        raise Invalid(f"invalid request: {name} must be between {low} and {high}")


def _check_call(call: Any, where: str) -> None:
    if not isinstance(call, dict) or not call.get("name"):
        raise Invalid(f"invalid request: {where}.name is required")
    if not isinstance(call.get("parameters"), dict):
        raise Invalid(f"invalid request: {where}.parameters must be an object")


def _check_results(results: Any, where: str) -> None:
    if not isinstance(results, list) or not results:
        raise Invalid(f"invalid request: {where} must be a non-empty list")
    for i, result in enumerate(results):
        _check_call((result or {}).get("call"), f"{where}[{i}].call")
        outputs = result.get("outputs")
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            raise Invalid(f"invalid request: {where}[{i}].outputs must be a list of objects")


def _check_history(history: Any) -> None:
    if not isinstance(history, list):
        raise Invalid("invalid request: chat_history must be a list")
    for i, entry in enumerate(history):
        role = entry.get("role") if isinstance(entry, dict) else None
        if role not in HISTORY_ROLES:
            raise Invalid(
                f"invalid request: chat_history[{i}].role must be one of "
                "USER, CHATBOT, SYSTEM, TOOL"
            )
        if role == "TOOL":
            _check_results(entry.get("tool_results"), f"chat_history[{i}].tool_results")
            continue
        message = entry.get("message")
        calls = entry.get("tool_calls") if role == "CHATBOT" else None
        if not isinstance(message, str) or (not message and not calls):
            raise Invalid(f"invalid request: chat_history[{i}].message must be a non-empty string")
        for j, call in enumerate(calls or ()):
            _check_call(call, f"chat_history[{i}].tool_calls[{j}]")


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise Invalid("invalid request: tools must be a list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not tool.get("name") or not tool.get("description"):
            raise Invalid(f"invalid request: tools[{i}] needs a name and a description")
        for name, spec in (tool.get("parameter_definitions") or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
                raise Invalid(
                    f"invalid request: tools[{i}].parameter_definitions.{name}.type is required"
                )


def validate_chat(payload: dict[str, Any]) -> None:
    for key in payload:
        if key not in CHAT_FIELDS:
            raise Invalid(f'invalid request: unknown field "{key}"')
    message = payload.get("message")
    if not isinstance(message, str):
        raise Invalid("invalid request: message must be a string")
    if not message and not payload.get("tool_results"):
        raise Invalid(
            "invalid request: message must be at least 1 token long or tool results must "
            "be specified."
        )
    if "chat_history" in payload:
        _check_history(payload["chat_history"])
    if "tools" in payload:
        _check_tools(payload["tools"])
    if "tool_results" in payload:
        if not payload.get("tools"):
            raise Invalid("invalid request: tool_results requires tools to be specified")
        _check_results(payload["tool_results"], "tool_results")
    temperature = payload.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or temperature < 0):
        raise Invalid("invalid request: temperature must be a non-negative number")
    _range(payload, "p", 0.01, 0.99)
    _range(payload, "k", 0, 500)
    _range(payload, "frequency_penalty", 0.0, 1.0)
    _range(payload, "presence_penalty", 0.0, 1.0)
    stops = payload.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or len(stops) > 5):
        raise Invalid("invalid request: stop_sequences must be a list of at most 5 strings")
    for connector in payload.get("connectors") or ():
        if not isinstance(connector, dict) or not connector.get("id"):
            raise Invalid("invalid request: connectors need an id")


class FakeCohere(FakeServer[RecordedRequest]):
    scenarios = SCENARIOS
    thread_name = "fake-cohere"

    def __init__(
        self,
        api_key: str | None = "co-key",
        reply: str = "Hello from fake Cohere.",
        input_tokens: int = 15,
        output_tokens: int = 6,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.reply = reply
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.preamble_tokens = 40  # Cohere's own prompt: counted in `tokens`, not billed
        self.tool_plan = "I will look up the weather."
        self.function_args: dict[str, Any] = {"location": "Paris"}
        self.embedding_dimensions = 8
        # False: ignore `Accepts: text/event-stream`, as deployments that only speak NDJSON do.
        self.sse_when_asked = True

    @staticmethod
    def _error(message: str, status: int) -> web.Response:
        return json_response({"message": message}, status)

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if recorded.method != "POST" or recorded.path not in ("/v1/chat", "/v1/embed"):
            return self._error("Not Found", 404)
        bearer = recorded.headers.get("authorization")
        if self.api_key is not None and bearer != f"Bearer {self.api_key}":
            return self._error("invalid api token", 401)
        payload = recorded.json
        if not isinstance(payload, dict):
            return self._error("invalid request: could not parse the body as JSON", 400)
        chat = recorded.path == "/v1/chat"
        model = payload.get("model", "command-r")
        if model not in (CHAT_MODELS if chat else EMBEDDING_MODELS):
            return self._error(
                f"model '{model}' not found, make sure the correct model ID was used and that "
                "you have access to the model.",
                404,
            )
        try:
            validate_chat(payload) if chat else self._validate_embed(payload)
        except Invalid as error:
            return self._error(str(error), 400)
        if scenario == "error_429":
            return self._error(
                "You are using a Trial key, which is limited to 10 API calls / minute.", 429
            )
        if scenario == "error_500":
            return self._error(
                "internal server error, this has been reported to our developers", 500
            )
        if not chat:
            return self._embed(payload)
        response = self._response(payload, scenario)
        if payload.get("stream") is True:
            return await self._stream(request, payload, response, scenario)
        return json_response(response)

    # ------------------------------------------------------------------ chat

    def _meta(self) -> dict[str, Any]:
        return {
            "api_version": {"version": "1"},
            "billed_units": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
            },
            "tokens": {
                "input_tokens": self.input_tokens + self.preamble_tokens,
                "output_tokens": self.output_tokens,
            },
        }

    def _response(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        tools = payload.get("tools")
        response: dict[str, Any] = {
            "response_id": str(uuid.uuid4()),
            "generation_id": str(uuid.uuid4()),
            "meta": self._meta(),
        }
        if tools and not payload.get("tool_results"):
            response["text"] = self.tool_plan
            response["tool_calls"] = [{"name": tools[0]["name"], "parameters": self.function_args}]
            response["finish_reason"] = "COMPLETE"
        else:
            text, reason = self.reply, "COMPLETE"
            if scenario == "max_tokens":
                text, reason = text[: len(text) // 2], "MAX_TOKENS"
            response["text"], response["finish_reason"] = text, reason
        if payload.get("connectors"):
            response["search_queries"] = [
                {"text": payload["message"], "generation_id": response["generation_id"]}
            ]
            response["documents"] = [
                {"id": "web-search_0", "snippet": "...", "title": "A page", "url": "https://e.x"}
            ]
        history = list(payload.get("chat_history") or ())
        history.append({"role": "USER", "message": payload["message"]})
        history.append({"role": "CHATBOT", "message": response["text"]})
        response["chat_history"] = history
        return response

    async def _stream(
        self,
        request: web.Request,
        payload: dict[str, Any],
        whole: dict[str, Any],
        scenario: str,
    ) -> web.StreamResponse:
        sse = self.sse_when_asked and request.headers.get("Accepts") == "text/event-stream"
        content_type = "text/event-stream" if sse else "application/stream+json"
        stream = web.StreamResponse(headers={"Content-Type": content_type})
        await stream.prepare(request)

        async def send(event: dict[str, Any]) -> None:
            data = json.dumps(event).encode()
            if sse:
                await stream.write(b"event: " + event["event_type"].encode() + b"\n")
                await stream.write(b"data: " + data + b"\n\n")
            else:
                await stream.write(data + b"\n")

        await send(
            {
                "is_finished": False,
                "event_type": "stream-start",
                "generation_id": whole["generation_id"],
            }
        )
        if whole.get("search_queries"):
            await send(
                {
                    "is_finished": False,
                    "event_type": "search-queries-generation",
                    "search_queries": whole["search_queries"],
                }
            )
        for i, piece in enumerate(split_text(whole["text"])):
            if scenario == "error_mid_stream" and i == 2:
                error = {**whole, "text": "internal error", "finish_reason": "ERROR"}
                await send(
                    {
                        "is_finished": True,
                        "event_type": "stream-end",
                        "finish_reason": "ERROR",
                        "response": error,
                    }
                )
                await stream.write_eof()
                return stream
            await send({"is_finished": False, "event_type": "text-generation", "text": piece})
        if whole.get("tool_calls"):
            call = whole["tool_calls"][0]
            await send(
                {
                    "is_finished": False,
                    "event_type": "tool-calls-chunk",
                    "tool_call_delta": {"index": 0, "name": call["name"]},
                }
            )
            await send(
                {
                    "is_finished": False,
                    "event_type": "tool-calls-generation",
                    "text": whole["text"],
                    "tool_calls": whole["tool_calls"],
                }
            )
        await send(
            {
                "is_finished": True,
                "event_type": "stream-end",
                "finish_reason": whole["finish_reason"],
                "response": whole,
            }
        )
        await stream.write_eof()
        return stream

    # ------------------------------------------------------------------ embeddings

    @staticmethod
    def _validate_embed(payload: dict[str, Any]) -> None:
        for key in payload:
            if key not in EMBED_FIELDS:
                raise Invalid(f'invalid request: unknown field "{key}"')
        texts = payload.get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise Invalid("invalid request: texts must be a non-empty list of strings")
        if not payload.get("input_type"):
            raise Invalid(
                "invalid request: valid input_type must be provided with the provided model"
            )

    def _embed(self, payload: dict[str, Any]) -> web.Response:
        texts = payload["texts"]
        tokens = sum(len(text.split()) for text in texts)
        return json_response(
            {
                "id": str(uuid.uuid4()),
                "texts": texts,
                "embeddings": [gemini_vector(t, self.embedding_dimensions) for t in texts],
                "meta": {"api_version": {"version": "1"}, "billed_units": {"input_tokens": tokens}},
                "response_type": "embeddings_floats",
            }
        )
