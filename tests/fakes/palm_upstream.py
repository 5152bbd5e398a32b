from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, RecordedRequest, json_response

# A fake PaLM 2 chat API (Generative Language `v1beta2`), over real HTTP.
#
#     with FakePaLM(api_key="palm-key") as fake:
#         fake.scenario = "filtered"
#         ...  # a PaLM channel with fake.base_url
#         assert fake.last_request.json["prompt"]["context"] == "Be brief."
#
# Route: POST /v1beta2/models/{model}:generateMessage, the key in `x-goog-api-key` or
# `?key=`. As strict as Google was: known fields only, a non-empty `prompt.messages` whose
# authors alternate, non-empty contents, temperature and topP in [0, 1], candidateCount in
# [1, 8]. Answers `{"candidates": [{"author", "content"}], "messages"}`; a filtered prompt
# has no candidates and `filters`. No streaming exists. Errors are Google's shape.

__all__ = ["MODELS", "SCENARIOS", "FakePaLM"]

MODELS = frozenset({"chat-bison-001"})
ERROR_SCENARIOS = frozenset({"error_429", "error_500"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "filtered"}
REQUEST_FIELDS = frozenset({"prompt", "temperature", "candidateCount", "topP", "topK"})
PROMPT_FIELDS = frozenset({"context", "examples", "messages"})
MESSAGE_FIELDS = frozenset({"author", "content", "citationMetadata"})


class Invalid(Exception):
    pass


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


def _unknown(name: str, where: str = "") -> Invalid:
    at = f" at '{where}'" if where else ""
    return Invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _check_range(payload: dict[str, Any], name: str, low: float, high: float) -> None:
    value = payload.get(name)
    if value is None:
        return
    if not isinstance(value, int | float) or not low <= value <= high:
        raise Invalid(f"* GenerateMessageRequest.{name}: must be in [{low}, {high}]")


def validate(payload: dict[str, Any]) -> None:
    for key in payload:
        if key not in REQUEST_FIELDS:
            raise _unknown(key)
    prompt = payload.get("prompt")
    if not isinstance(prompt, dict):
        raise Invalid("* GenerateMessageRequest.prompt: prompt is required")
    for key in prompt:
        if key not in PROMPT_FIELDS:
            raise _unknown(key, "prompt")
    if "context" in prompt and not isinstance(prompt["context"], str):
        raise Invalid("* GenerateMessageRequest.prompt.context: must be a string")
    messages = prompt.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Invalid("* GenerateMessageRequest.prompt.messages: messages must not be empty")
    previous = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Invalid(f"* GenerateMessageRequest.prompt.messages[{i}]: must be an object")
        for key in message:
            if key not in MESSAGE_FIELDS:
                raise _unknown(key, f"prompt.messages[{i}]")
        if not isinstance(message.get("content"), str) or not message["content"]:
            raise Invalid(f"* GenerateMessageRequest.prompt.messages[{i}].content: required")
        author = message.get("author")
        if previous is not None and author == previous:
            raise Invalid("* GenerateMessageRequest.prompt.messages: authors must alternate")
        previous = author
    _check_range(payload, "temperature", 0.0, 1.0)
    _check_range(payload, "topP", 0.0, 1.0)
    _check_range(payload, "candidateCount", 1, 8)
    if "topK" in payload and (not isinstance(payload["topK"], int) or payload["topK"] < 0):
        raise Invalid("* GenerateMessageRequest.topK: must be a non-negative integer")


class FakePaLM(FakeServer[RecordedRequest]):
    scenarios = SCENARIOS
    thread_name = "fake-palm"

    def __init__(
        self, api_key: str | None = "palm-key", reply: str = "Hello from fake PaLM.", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.reply = reply

    def _error(self, code: int, status: str, message: str) -> web.Response:
        return json_response(
            google_error(code, status, message), code, "application/json; charset=UTF-8"
        )

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        prefix = "/v1beta2/models/"
        model, _, method = recorded.path.removeprefix(prefix).partition(":")
        if (
            recorded.method != "POST"
            or not recorded.path.startswith(prefix)
            or method != "generateMessage"
        ):
            return self._error(404, "NOT_FOUND", f"Method not found: {recorded.path}")
        key = recorded.headers.get("x-goog-api-key") or recorded.query.get("key")
        if self.api_key is not None and not key:
            return self._error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if self.api_key is not None and key != self.api_key:
            return self._error(
                400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."
            )
        if model not in MODELS:
            return self._error(404, "NOT_FOUND", f"models/{model} is not found")
        if not isinstance(recorded.json, dict):
            return self._error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        try:
            validate(recorded.json)
        except Invalid as error:
            return self._error(400, "INVALID_ARGUMENT", str(error))
        if scenario == "error_429":
            return self._error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted.")
        if scenario == "error_500":
            return self._error(500, "INTERNAL", "An internal error has occurred.")
        messages = recorded.json["prompt"]["messages"]
        body: dict[str, Any] = {"messages": messages}
        if scenario == "filtered":
            body["filters"] = [{"reason": "OTHER"}]
        else:
            count = recorded.json.get("candidateCount") or 1
            body["candidates"] = [{"author": "1", "content": self.reply}] * count
        return json_response(body, 200, "application/json; charset=UTF-8")
