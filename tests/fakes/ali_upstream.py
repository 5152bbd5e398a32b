from __future__ import annotations

import hashlib
import json
import struct
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake Alibaba DashScope upstream: a real HTTP server speaking DashScope's native API.
#
#     with FakeAli(api_key="sk-ali") as fake:
#         fake.scenario = "tool_call"
#         ...  # point the gateway at fake.base_url
#         assert fake.last_request.json["parameters"]["result_format"] == "message"
#
# Routes are DashScope's: POST /api/v1/services/aigc/text-generation/generation,
# .../multimodal-generation/generation, /api/v1/services/embeddings/text-embedding/
# text-embedding, /api/v1/services/aigc/text2image/image-synthesis (asynchronous only) and
# GET /api/v1/tasks/{task_id}; generated images are served under /images/. It is strict
# where a converting gateway can go wrong: the Bearer key, unknown models (a `-internet`
# suffix included), string content on the text service and `[{"text"}, {"image"}]` items on
# the multimodal one, roles and their order, parameter names and ranges (temperature [0, 2),
# top_p (0, 1]), SSE only with `X-DashScope-SSE: enable`, images only with
# `X-DashScope-Async: enable`. Errors are `{"code", "message", "request_id"}`, framed as an
# `event:error` SSE answer when the request asked for SSE, as DashScope does.

__all__ = [
    "CHAT_MODELS",
    "EMBEDDING_MODELS",
    "IMAGE_MODELS",
    "SCENARIOS",
    "VL_MODELS",
    "FakeAli",
    "RecordedRequest",
    "ali_vector",
]

TEXT_PATH = "/api/v1/services/aigc/text-generation/generation"
MULTIMODAL_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
EMBEDDING_PATH = "/api/v1/services/embeddings/text-embedding/text-embedding"
IMAGE_PATH = "/api/v1/services/aigc/text2image/image-synthesis"
TASK_PREFIX = "/api/v1/tasks/"

CHAT_MODELS = frozenset({"qwen-turbo", "qwen-plus", "qwen-max", "qwq-32b-preview"})
VL_MODELS = frozenset({"qwen-vl-plus", "qwen-vl-max"})
EMBEDDING_MODELS = frozenset({"text-embedding-v1", "text-embedding-v2", "text-embedding-v3"})
IMAGE_MODELS = frozenset({"wanx-v1"})
IMAGE_SIZES = frozenset({"1024*1024", "720*1280", "1280*720", "768*1152"})

ERROR_SCENARIOS = {
    "error_429": (429, "Throttling.RateQuota", "Requests rate limit exceeded."),
    "error_500": (500, "InternalError", "An internal error has occured, please try again."),
    "data_inspection": (400, "DataInspectionFailed", "Input data may contain bad content."),
}
SCENARIOS = frozenset(ERROR_SCENARIOS) | {
    "ok",
    "tool_call",
    "length",
    "thinking",
    "error_mid_stream",
    "image_failed",
    "image_slow",
}
PARAMETERS = frozenset(
    {
        "result_format",
        "incremental_output",
        "enable_search",
        "temperature",
        "top_p",
        "top_k",
        "max_tokens",
        "seed",
        "stop",
        "n",
        "presence_penalty",
        "repetition_penalty",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "enable_thinking",
        "thinking_budget",
    }
)
PNG_1X1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db00000000049454e44ae426082"
)


class AliError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def invalid(message: str) -> AliError:
    return AliError(400, "InvalidParameter", message)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: dict[str, Any] | None = None


def ali_vector(text: str, dimensions: int = 8) -> list[float]:
    """The deterministic vector the fake returns for one text (float32-exact)."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    values = [i / 0xFFFFFFFF * 2 - 1 for i in struct.unpack(f"<{dimensions}I", raw)]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *values)))


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# ---------------------------------------------------------------------- validation


def _check_number(parameters: dict[str, Any], name: str, low: float, high: float) -> None:
    value = parameters.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"Parameter {name} should be a number")
    if not low <= value <= high:
        raise invalid(f"Range of {name} should be [{low}, {high})")


def _check_parameters(parameters: Any, sse: bool) -> None:
    if not isinstance(parameters, dict):
        raise invalid("parameters must be an object")
    for name in parameters:
        if name not in PARAMETERS:
            raise invalid(f"Parameter {name} is not supported")
    if parameters.get("result_format", "text") not in ("text", "message"):
        raise invalid("result_format must be text or message")
    _check_number(parameters, "temperature", 0.0, 1.9999)
    _check_number(parameters, "top_p", 0.00001, 1.0)
    _check_number(parameters, "presence_penalty", -2.0, 2.0)
    if parameters.get("incremental_output") and not sse:
        raise invalid("incremental_output is only supported for streaming (SSE) requests")
    stop = parameters.get("stop")
    if stop is not None and not isinstance(stop, str | list):
        raise invalid("stop must be a string or a list")
    for tool in parameters.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type") != "function" or not isinstance(function, dict):
            raise invalid("tools[].type must be function")
        if not function.get("name") or not isinstance(function.get("parameters"), dict):
            raise invalid("tools[].function needs a name and parameters object")
    choice = parameters.get("tool_choice")
    named = isinstance(choice, dict) and (choice.get("function") or {}).get("name")
    if choice is not None and choice not in ("auto", "none") and not named:
        raise invalid("tool_choice must be auto, none or a function")


def _check_content(content: Any, multimodal: bool, where: str) -> None:
    if not multimodal:
        if not isinstance(content, str):
            raise invalid(f"{where}.content must be a string for this model")
        return
    if isinstance(content, str):
        return  # assistant and tool turns may stay plain strings
    if not isinstance(content, list) or not content:
        raise invalid(f"{where}.content must be a non-empty list")
    for item in content:
        keys = set(item) if isinstance(item, dict) else set()
        if len(keys) != 1 or not keys <= {"text", "image", "audio", "video"}:
            raise invalid(f"{where}.content items have exactly one of text, image, audio")
        (value,) = item.values()
        if not isinstance(value, str) or not value:
            raise invalid(f"{where}.content item must not be empty")


def _check_messages(messages: Any, multimodal: bool) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("input.messages must not be empty")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(f"{where} must be an object")
        role = message.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise invalid(f"{where}.role must be system, user, assistant or tool")
        if role == "system" and i != 0:
            raise invalid("The system message must be the first one")
        _check_content(message.get("content"), multimodal, where)
        if role == "tool" and not message.get("tool_call_id"):
            raise invalid(f"{where}: a tool message needs tool_call_id")
    if messages[-1]["role"] not in ("user", "tool"):
        raise invalid("The last message must be from the user or a tool")


# ---------------------------------------------------------------------- the fake


class FakeAli(FakeServer[RecordedRequest]):
    """A local DashScope with switchable scenarios; public attributes may be changed from
    the test thread at any time."""

    scenarios = SCENARIOS
    thread_name = "fake-ali"

    def __init__(
        self,
        api_key: str = "sk-ali",
        reply: str = "Hello from fake Qwen.",
        input_tokens: int = 11,
        output_tokens: int = 7,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.api_key = api_key
        self.reply = reply
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.reasoning = "The user greets me."
        self.function_args = '{"location": "Paris"}'
        self.embedding_dimensions = 8
        # Polls a task answers PENDING/RUNNING before it is done.
        self.task_polls = 2
        self._tasks: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ public API

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._tasks.clear()
        self.task_polls = 2

    def image_url(self, name: str) -> str:
        return f"{self.base_url}/images/{name}.png"

    # ------------------------------------------------------------------ routing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._receive(request)
        sse = recorded.headers.get("x-dashscope-sse") == "enable"
        if request.method == "GET" and request.path.startswith("/images/"):
            return web.Response(body=PNG_1X1, content_type="image/png")
        try:
            self._check_key(recorded)
            if request.method == "GET" and request.path.startswith(TASK_PREFIX):
                return self._json(self._poll(request.path.removeprefix(TASK_PREFIX)))
            if request.method != "POST":
                raise AliError(405, "MethodNotAllowed", f"{request.method} is not allowed")
            if recorded.json is None:
                raise invalid("Request body is not valid JSON")
            scenario = self._next_scenario()
            if request.path == EMBEDDING_PATH:
                return self._json(self._embeddings(recorded.json))
            if request.path == IMAGE_PATH:
                return self._json(self._submit(recorded, scenario))
            if request.path in (TEXT_PATH, MULTIMODAL_PATH):
                return await self._generation(request, recorded, scenario, sse)
            raise AliError(404, "NotFound", f"Path {request.path} not found")
        except AliError as error:
            return self._error(error, sse)

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        return RecordedRequest(
            request.method, request.path, lower_headers(request), body, json_object(body)
        )

    def _check_key(self, recorded: RecordedRequest) -> None:
        if recorded.headers.get("authorization") != f"Bearer {self.api_key}":
            raise AliError(401, "InvalidApiKey", "Invalid API-key provided.")

    # ------------------------------------------------------------------ responses

    @staticmethod
    def _request_id() -> str:
        return str(uuid.uuid4())

    def _json(self, data: Any, status: int = 200) -> web.Response:
        return web.Response(
            status=status, body=json.dumps(data).encode(), content_type="application/json"
        )

    def _error(self, error: AliError, sse: bool) -> web.Response:
        data = {"code": error.code, "message": error.message, "request_id": self._request_id()}
        if not sse:
            return self._json(data, error.status)
        frame = f"id:1\nevent:error\n:HTTP_STATUS/{error.status}\ndata:{json.dumps(data)}\n\n"
        return web.Response(
            status=error.status, body=frame.encode(), content_type="text/event-stream"
        )

    def _usage(self, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": self.input_tokens + output_tokens,
        }

    # ------------------------------------------------------------------ generation

    async def _generation(
        self, request: web.Request, recorded: RecordedRequest, scenario: str, sse: bool
    ) -> web.StreamResponse:
        payload = recorded.json or {}
        multimodal = request.path == MULTIMODAL_PATH
        model = payload.get("model")
        if model not in (VL_MODELS if multimodal else CHAT_MODELS):
            raise invalid("Model not exist.")
        for key in payload:
            if key not in ("model", "input", "parameters"):
                raise invalid(f"Field {key} is not supported")
        _check_messages((payload.get("input") or {}).get("messages"), multimodal)
        parameters = payload.get("parameters") or {}
        _check_parameters(parameters, sse)
        if scenario in ERROR_SCENARIOS:
            raise AliError(*ERROR_SCENARIOS[scenario])
        if sse:
            return await self._stream(request, payload, scenario, multimodal)
        return self._json(self._answer(payload, scenario, multimodal))

    def _wants_tool(self, payload: dict[str, Any]) -> str | None:
        parameters = payload.get("parameters") or {}
        tools = parameters.get("tools") or []
        last = payload["input"]["messages"][-1]
        if not tools or parameters.get("tool_choice") == "none" or last["role"] == "tool":
            return None
        choice = parameters.get("tool_choice")
        if isinstance(choice, dict):
            return str(choice["function"]["name"])
        return str(tools[0]["function"]["name"])

    def _text(self, payload: dict[str, Any], scenario: str) -> tuple[str, str]:
        text, reason = self.reply, "stop"
        stop = (payload.get("parameters") or {}).get("stop")
        for word in [stop] if isinstance(stop, str) else stop or ():
            if word in text:
                text = text[: text.index(word)]
        if scenario == "length":
            text, reason = text[: len(text) // 2], "length"
        return text, reason

    def _content(self, text: str, multimodal: bool) -> Any:
        return [{"text": text}] if multimodal else text

    def _answer(self, payload: dict[str, Any], scenario: str, multimodal: bool) -> Any:
        tool = self._wants_tool(payload)
        n = (payload.get("parameters") or {}).get("n") or 1
        choices = []
        for index in range(n):
            message: dict[str, Any] = {"role": "assistant"}
            if tool is not None:
                message["content"] = ""
                message["tool_calls"] = [
                    {
                        "function": {"name": tool, "arguments": self.function_args},
                        "index": 0,
                        "id": f"call_{uuid.uuid4().hex[:24]}",
                        "type": "function",
                    }
                ]
                reason = "tool_calls"
            else:
                text, reason = self._text(payload, scenario)
                message["content"] = self._content(text, multimodal)
                if scenario == "thinking":
                    message["reasoning_content"] = self.reasoning
            choice: dict[str, Any] = {"finish_reason": reason, "message": message}
            if n > 1:
                choice["index"] = index
            choices.append(choice)
        usage = self._usage(self.output_tokens * n)
        if multimodal:
            usage["image_tokens"] = 1247
        return {"output": {"choices": choices}, "usage": usage, "request_id": self._request_id()}

    def _stream_pieces(self, payload: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
        """The messages of each event, the last with its finish reason."""
        tool = self._wants_tool(payload)
        if tool is not None:
            call_id = f"call_{uuid.uuid4().hex[:24]}"
            arguments = _split(self.function_args, 2)
            pieces: list[dict[str, Any]] = [
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call_id,
                            "type": "function",
                            "function": {"name": tool, "arguments": arguments[0]},
                        }
                    ]
                }
            ]
            pieces += [
                {"tool_calls": [{"index": 0, "id": "", "function": {"arguments": a}}]}
                for a in arguments[1:]
            ]
            return [
                {"message": {"role": "assistant", "content": "", **p}, "reason": "null"}
                for p in pieces
            ] + [{"message": {"role": "assistant", "content": ""}, "reason": "tool_calls"}]
        text, reason = self._text(payload, scenario)
        events = []
        if scenario == "thinking":
            events.append(
                {
                    "message": {
                        "role": "assistant",
                        "content": "",
                        "reasoning_content": self.reasoning,
                    },
                    "reason": "null",
                }
            )
        parts = _split(text)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            events.append(
                {
                    "message": {"role": "assistant", "content": part},
                    "reason": reason if last else "null",
                }
            )
        return events

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], scenario: str, multimodal: bool
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream;charset=UTF-8",
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(request)
        request_id = self._request_id()
        events = self._stream_pieces(payload, scenario)
        for i, event in enumerate(events, start=1):
            if scenario == "error_mid_stream" and i == 2:
                error = {"code": "InternalError", "message": "Internal server error!"}
                error["request_id"] = request_id
                frame = f"id:{i}\nevent:error\n:HTTP_STATUS/500\ndata:{json.dumps(error)}\n\n"
                await response.write(frame.encode())
                break
            message = dict(event["message"])
            if multimodal and isinstance(message.get("content"), str):
                message["content"] = [{"text": message["content"]}] if message["content"] else []
            data = {
                "output": {"choices": [{"message": message, "finish_reason": event["reason"]}]},
                # Cumulative counts, complete on the last event.
                "usage": self._usage(self.output_tokens if i == len(events) else i),
                "request_id": request_id,
            }
            frame = f"id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(data)}\n\n"
            await response.write(frame.encode())
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ embeddings

    def _embeddings(self, payload: dict[str, Any]) -> dict[str, Any]:
        if payload.get("model") not in EMBEDDING_MODELS:
            raise invalid("Model not exist.")
        texts = (payload.get("input") or {}).get("texts")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise invalid("input.texts must be a non-empty list of strings")
        parameters = payload.get("parameters") or {}
        for name in parameters:
            if name not in ("text_type", "dimension", "output_type"):
                raise invalid(f"Parameter {name} is not supported")
        size = parameters.get("dimension") or self.embedding_dimensions
        return {
            "output": {
                "embeddings": [
                    {"text_index": i, "embedding": ali_vector(t, size)} for i, t in enumerate(texts)
                ]
            },
            "usage": {"total_tokens": sum(len(t.split()) for t in texts)},
            "request_id": self._request_id(),
        }

    # ------------------------------------------------------------------ image tasks

    def _submit(self, recorded: RecordedRequest, scenario: str) -> dict[str, Any]:
        if recorded.headers.get("x-dashscope-async") != "enable":
            raise AliError(
                403, "AccessDenied", "current user api does not support synchronous calls"
            )
        payload = recorded.json or {}
        if payload.get("model") not in IMAGE_MODELS:
            raise invalid("Model not exist.")
        prompt = (payload.get("input") or {}).get("prompt")
        if not isinstance(prompt, str) or not prompt:
            raise invalid("input.prompt is required")
        parameters = payload.get("parameters") or {}
        for name in parameters:
            if name not in ("size", "n", "seed", "style", "ref_strength", "ref_mode"):
                raise invalid(f"Parameter {name} is not supported")
        if parameters.get("size", "1024*1024") not in IMAGE_SIZES:
            raise invalid("size is invalid")
        n = parameters.get("n", 1)
        if not isinstance(n, int) or not 1 <= n <= 4:
            raise invalid("n should be in [1, 4]")
        if scenario in ERROR_SCENARIOS:
            raise AliError(*ERROR_SCENARIOS[scenario])
        task_id = str(uuid.uuid4())
        with self._lock:
            self._tasks[task_id] = {"n": n, "polls": 0, "scenario": scenario}
        return {
            "output": {"task_status": "PENDING", "task_id": task_id},
            "request_id": self._request_id(),
        }

    def _poll(self, task_id: str) -> dict[str, Any]:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise AliError(404, "NotFound", "task not found")
            task["polls"] += 1
            polls = task["polls"]
        output: dict[str, Any] = {"task_id": task_id}
        if task["scenario"] == "image_slow" or polls <= self.task_polls:
            output["task_status"] = "PENDING" if polls == 1 else "RUNNING"
        elif task["scenario"] == "image_failed":
            output |= {
                "task_status": "FAILED",
                "code": "InternalError.Algo",
                "message": "An internal error occured while generating the image.",
            }
        else:
            output |= {
                "task_status": "SUCCEEDED",
                "results": [{"url": self.image_url(f"{task_id}-{i}")} for i in range(task["n"])],
                "task_metrics": {"TOTAL": task["n"], "SUCCEEDED": task["n"], "FAILED": 0},
            }
        result: dict[str, Any] = {"request_id": self._request_id(), "output": output}
        if output["task_status"] == "SUCCEEDED":
            result["usage"] = {"image_count": task["n"]}
        return result
