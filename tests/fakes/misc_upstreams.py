from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from tests.fakes.server import FakeServer, json_object, lower_headers

# Fake upstreams of five small families, each a real HTTP server speaking its wire format:
#
#     with FakeCoze(api_key="pat-test") as coze:
#         coze.scenario = "error_code"
#         ...  # point a Coze channel at coze.base_url
#         assert coze.last_request.json["bot_id"] == "7342"
#
# FakeCoze (open_api/v2/chat), FakeCloudflare (Workers AI `ai/run`), FakeDeepL
# (/v2/translate), FakeReplicate (predictions, polling, files) and FakeAIProxyLibrary
# (/api/library/ask). Each checks what its real API checks where a converting gateway can
# go wrong (auth header, required fields, value ranges, roles) and answers failures the
# way the real one does: Coze and AIProxy inside a 200, Cloudflare with its v4 error
# envelope, DeepL with `{message}`, Replicate with RFC 7807 problems. Like the other fakes
# they run their own event loop in a daemon thread; scenarios switch behaviour per test.

__all__ = [
    "FakeAIProxyLibrary",
    "FakeCloudflare",
    "FakeCoze",
    "FakeDeepL",
    "FakeReplicate",
    "RecordedRequest",
]

Json = dict[str, Any]
# A 1x1 transparent PNG: the "generated image" FakeReplicate serves.
PNG_BYTES = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: Json | None = None
    at: float = 0.0  # time.monotonic() on arrival


def _dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


class _FakeServer(FakeServer[RecordedRequest]):
    """What the fakes here share beyond FakeServer: a key, the arrival time in records and
    their answers' helpers."""

    def __init__(self, api_key: str | None, *, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.api_key = api_key

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        return RecordedRequest(
            request.method,
            request.path,
            lower_headers(request),
            body,
            json_object(body),
            time.monotonic(),
        )

    @staticmethod
    def json_response(data: Any, status: int = 200, **headers: str) -> web.Response:
        return web.Response(
            status=status,
            body=_dumps(data),
            headers={"Content-Type": "application/json", **headers},
        )

    @staticmethod
    async def sse(request: web.Request, events: list[bytes]) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
        )
        await response.prepare(request)
        for event in events:
            await response.write(event)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    def bearer_ok(self, recorded: RecordedRequest) -> bool:
        return self.api_key is None or recorded.headers.get("authorization") == (
            f"Bearer {self.api_key}"
        )


# ---------------------------------------------------------------------- Coze


class FakeCoze(_FakeServer):
    """coze.com `POST /open_api/v2/chat`: failures come as `{code, msg}` in a 200."""

    thread_name = "fake-coze"
    scenarios = frozenset({"ok", "error_code", "error_mid_stream", "error_500"})

    def __init__(
        self, api_key: str | None = "pat-test", reply: str = "Hello from the fake bot.", **kw: Any
    ) -> None:
        super().__init__(api_key, **kw)
        self.reply = reply
        self.bots = {"7342"}
        self.follow_up = "Would you like to know more?"

    def _code(self, code: int, msg: str) -> web.Response:
        return self.json_response({"code": code, "msg": msg})

    def _invalid(self, payload: Json) -> str | None:
        for name in ("bot_id", "user", "query"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                return f"invalid param: {name} is required"
        history = payload.get("chat_history", [])
        if not isinstance(history, list):
            return "invalid param: chat_history must be a list"
        for i, message in enumerate(history):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                return f"invalid param: chat_history[{i}].role must be user or assistant"
            if not isinstance(message.get("content"), str):
                return f"invalid param: chat_history[{i}].content must be a string"
            if message.get("content_type") != "text":
                return f"invalid param: chat_history[{i}].content_type must be text"
        if "stream" in payload and not isinstance(payload["stream"], bool):
            return "invalid param: stream must be a boolean"
        return None

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if (request.method, request.path) != ("POST", "/open_api/v2/chat"):
            return web.Response(status=404, text="404 page not found")
        if not self.bearer_ok(recorded):
            return self._code(4100, "authentication is invalid")
        payload = recorded.json
        if payload is None:
            return self._code(4000, "invalid param: request body must be JSON")
        problem = self._invalid(payload)
        if problem is not None:
            return self._code(4000, problem)
        if payload["bot_id"] not in self.bots:
            return self._code(4200, f"bot {payload['bot_id']} does not exist")
        if scenario == "error_code":
            return self._code(4015, "The bot has not been published to the API channel")
        if scenario == "error_500":
            return self.json_response({"code": 5000, "msg": "internal error"}, 500)
        conversation = payload.get("conversation_id") or str(secrets.randbelow(10**18))
        if payload.get("stream") is True:
            return await self.sse(request, self._events(conversation, scenario))
        return self.json_response(
            {
                "messages": [
                    self._message("answer", self.reply),
                    self._message("follow_up", self.follow_up),
                    self._message("verbose", '{"msg_type":"generate_answer_finish"}'),
                ],
                "conversation_id": conversation,
                "code": 0,
                "msg": "success",
            }
        )

    @staticmethod
    def _message(kind: str, content: str) -> Json:
        return {"role": "assistant", "type": kind, "content": content, "content_type": "text"}

    def _events(self, conversation: str, scenario: str) -> list[bytes]:
        def event(name: str, data: Json) -> bytes:
            return f"event:{name}\n".encode() + b"data:" + _dumps(data) + b"\n\n"

        def message(kind: str, content: str, seq: int, finish: bool = False) -> bytes:
            data = {
                "event": "message",
                "message": self._message(kind, content),
                "is_finish": finish,
                "index": 0,
                "conversation_id": conversation,
                "seq_id": seq,
            }
            return event("message", data)

        pieces = _split(self.reply)
        if scenario == "error_mid_stream":
            error = {"event": "error", "error_information": {"code": 5000, "msg": "bot crashed"}}
            return [message("answer", pieces[0], 0), event("error", error)]
        events = [message("answer", piece, i) for i, piece in enumerate(pieces)]
        events.append(message("answer", "", len(pieces), finish=True))
        events.append(message("follow_up", self.follow_up, len(pieces) + 1, finish=True))
        events.append(event("done", {"event": "done"}))
        return events


# ---------------------------------------------------------------------- Cloudflare


CLOUDFLARE_TEXT_MODELS = frozenset(
    {
        "@cf/meta/llama-3.1-8b-instruct",
        "@cf/meta/llama-2-7b-chat-int8",
        "@cf/mistral/mistral-7b-instruct-v0.1",
        "@cf/qwen/qwen1.5-7b-chat-awq",
    }
)
CLOUDFLARE_VISION_MODELS = frozenset({"@cf/meta/llama-3.2-11b-vision-instruct"})
CLOUDFLARE_EMBEDDING_DIMENSIONS = {
    "@cf/baai/bge-base-en-v1.5": 768,
    "@cf/baai/bge-small-en-v1.5": 384,
    "@cf/baai/bge-large-en-v1.5": 1024,
}
CLOUDFLARE_RANGES = {
    "temperature": (0, 5),
    "top_p": (0, 2),
    "frequency_penalty": (0, 2),
    "presence_penalty": (0, 2),
    "repetition_penalty": (0, 2),
    "top_k": (1, 50),
    "seed": (1, 9_999_999_999),
}


def embedding_of(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for `text`."""
    seed = sum(ord(c) for c in text) or 1
    raw = [math.sin(seed * (i + 1)) for i in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


class FakeCloudflare(_FakeServer):
    """Workers AI `POST /client/v4/accounts/{account}/ai/run/{model}`."""

    thread_name = "fake-cloudflare"
    scenarios = frozenset({"ok", "tool_call", "error_429", "error_500", "success_false"})

    def __init__(
        self,
        api_key: str | None = "cf-token",
        account_id: str = "acc0123456789",
        reply: str = "Hello from Workers AI.",
        **kw: Any,
    ) -> None:
        super().__init__(api_key, **kw)
        self.account_id = account_id
        self.reply = reply
        self.usage = {"prompt_tokens": 17, "completion_tokens": 8, "total_tokens": 25}
        self.tool_call = {"name": "get_weather", "arguments": {"location": "Paris"}}

    @staticmethod
    def _errors(status: int, code: int, message: str) -> web.Response:
        body = {"result": None, "success": False, "errors": [{"code": code, "message": message}]}
        return _FakeServer.json_response({**body, "messages": []}, status)

    def _ok(self, result: Any) -> web.Response:
        return self.json_response({"result": result, "success": True, "errors": [], "messages": []})

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        prefix = f"/client/v4/accounts/{self.account_id}/ai/run/"
        if request.method != "POST" or "/ai/run/" not in request.path:
            return self._errors(404, 7000, "No route for that URI")
        if not self.bearer_ok(recorded) or not request.path.startswith(prefix):
            return self._errors(401, 10000, "Authentication error")
        model = request.path[len(prefix) :]
        payload = recorded.json
        if payload is None:
            return self._errors(400, 5006, "AiError: Bad input: request body must be JSON")
        if scenario == "error_429":
            return self._errors(429, 3040, "No more data centers to forward the request to")
        if scenario == "error_500":
            return self._errors(500, 3000, "Unknown internal error")
        if scenario == "success_false":
            return self.json_response(
                {
                    "result": None,
                    "success": False,
                    "errors": [{"code": 3030, "message": "capacity"}],
                }
            )
        if model in CLOUDFLARE_EMBEDDING_DIMENSIONS:
            return self._embed(payload, CLOUDFLARE_EMBEDDING_DIMENSIONS[model])
        if model not in CLOUDFLARE_TEXT_MODELS | CLOUDFLARE_VISION_MODELS:
            return self._errors(400, 5007, f"No such model {model} or task")
        problem = self._invalid(payload, model in CLOUDFLARE_VISION_MODELS)
        if problem is not None:
            return self._errors(400, 5006, f"AiError: Bad input: {problem}")
        calls = scenario == "tool_call" and bool(payload.get("tools"))
        if payload.get("stream") is True:
            return await self.sse(request, self._events(calls))
        result: Json = {"response": None if calls else self.reply, "usage": self.usage}
        if calls:
            result["tool_calls"] = [self.tool_call]
        return self._ok(result)

    def _invalid(self, payload: Json, vision: bool) -> str | None:
        if "messages" in payload:
            messages = payload["messages"]
            if not isinstance(messages, list) or not messages:
                return "Error: At '/messages': must be a non-empty array"
            for i, message in enumerate(messages):
                if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                    return f"Error: At '/messages/{i}': must have required property 'role'"
                content = message.get("content")
                if not isinstance(content, str) and not (vision and isinstance(content, list)):
                    return f"Error: At '/messages/{i}/content': must be string"
        elif not isinstance(payload.get("prompt"), str) or not payload["prompt"]:
            return "Error: required properties at '/' are 'prompt' or 'messages'"
        for name, (low, high) in CLOUDFLARE_RANGES.items():
            value = payload.get(name)
            if value is None:
                continue
            if not isinstance(value, int | float) or isinstance(value, bool):
                return f"Error: At '/{name}': must be number"
            if not low <= value <= high:
                return f"Error: At '/{name}': must be >= {low} and <= {high}"
        max_tokens = payload.get("max_tokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            return "Error: At '/max_tokens': must be integer"
        return None

    def _embed(self, payload: Json, dimensions: int) -> web.Response:
        text = payload.get("text")
        texts = [text] if isinstance(text, str) else text
        if (
            not isinstance(texts, list)
            or not texts
            or len(texts) > 100
            or not all(isinstance(t, str) and t for t in texts)
        ):
            return self._errors(400, 5006, "AiError: Bad input: Error: At '/text': invalid")
        data = [embedding_of(t, dimensions) for t in texts]
        return self._ok({"shape": [len(data), dimensions], "data": data, "pooling": "mean"})

    def _events(self, calls: bool) -> list[bytes]:
        def data(event: Any) -> bytes:
            return b"data: " + _dumps(event) + b"\n\n"

        events: list[bytes] = []
        if calls:
            events.append(data({"response": "", "tool_calls": [self.tool_call]}))
        else:
            events += [data({"response": p, "p": "abcdef"}) for p in _split(self.reply)]
        events.append(data({"response": "", "usage": self.usage}))
        events.append(b"data: [DONE]\n\n")
        return events


# ---------------------------------------------------------------------- DeepL


DEEPL_TARGETS = frozenset(
    [
        "AR",
        "BG",
        "CS",
        "DA",
        "DE",
        "EL",
        "EN",
        "EN-GB",
        "EN-US",
        "ES",
        "ES-419",
        "ET",
        "FI",
        "FR",
        "HE",
        "HU",
        "ID",
        "IT",
        "JA",
        "KO",
        "LT",
        "LV",
        "NB",
        "NL",
        "PL",
        "PT",
        "PT-BR",
        "PT-PT",
        "RO",
        "RU",
        "SK",
        "SL",
        "SV",
        "TH",
        "TR",
        "UK",
        "VI",
        "ZH",
        "ZH-HANS",
        "ZH-HANT",
    ]
)


class FakeDeepL(_FakeServer):
    """DeepL `POST /v2/translate` (JSON or form body), `DeepL-Auth-Key` header."""

    thread_name = "fake-deepl"
    scenarios = frozenset({"ok", "quota", "error_500"})

    def __init__(self, api_key: str | None = "deepl-key:fx", **kw: Any) -> None:
        super().__init__(api_key, **kw)
        self.translations: dict[tuple[str, str], str] = {("ZH", "Hello"): "你好"}
        self.detected = "EN"

    def translate(self, text: str, target: str) -> str:
        return self.translations.get((target, text), f"[{target}] {text}")

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if (request.method, request.path) != ("POST", "/v2/translate"):
            return web.Response(status=404)
        if self.api_key is not None and recorded.headers.get("authorization") != (
            f"DeepL-Auth-Key {self.api_key}"
        ):
            return self.json_response({"message": "Authorization failure, check auth_key"}, 403)
        if scenario == "quota":
            return self.json_response({"message": "Quota Exceeded"}, 456)
        if scenario == "error_500":
            return self.json_response({"message": "Internal server error"}, 500)
        payload = recorded.json
        if payload is None:
            form = parse_qs(recorded.body.decode("utf-8", "replace"))
            payload = {
                "text": form.get("text"),
                "target_lang": (form.get("target_lang") or [""])[0],
            }
        texts = payload.get("text")
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return self.json_response({"message": "Parameter 'text' not specified."}, 400)
        target = payload.get("target_lang")
        if not isinstance(target, str) or target.upper() not in DEEPL_TARGETS:
            return self.json_response({"message": "Value for 'target_lang' not supported."}, 400)
        translations = []
        for text in texts:
            item: Json = {
                "detected_source_language": self.detected,
                "text": self.translate(text, target.upper()),
            }
            if payload.get("show_billed_characters") is True:
                item["billed_characters"] = len(text)
            translations.append(item)
        return self.json_response({"translations": translations})


# ---------------------------------------------------------------------- Replicate


REPLICATE_CHAT_MODELS = frozenset(
    {
        "meta/meta-llama-3-8b-instruct",
        "meta/meta-llama-3-70b-instruct",
        "meta/llama-2-7b-chat",
        "mistralai/mistral-7b-instruct-v0.2",
    }
)
REPLICATE_IMAGE_MODELS = {
    # model: largest num_outputs it takes (None: it has no such input)
    "black-forest-labs/flux-schnell": 4,
    "black-forest-labs/flux-1.1-pro": None,
    "stability-ai/stable-diffusion-3": None,
}
REPLICATE_ASPECT_RATIOS = frozenset(
    {"1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"}
)
REPLICATE_VERSIONS = {
    "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa": "meta/llama-2-7b-chat"
}


class FakeReplicate(_FakeServer):
    """Replicate predictions: create (201, `Prefer: wait`), poll, cancel, and the files."""

    thread_name = "fake-replicate"
    scenarios = frozenset({"ok", "failed", "never", "error_422"})

    def __init__(
        self, api_key: str | None = "r8_test", reply: str = "Hello from Replicate.", **kw: Any
    ) -> None:
        super().__init__(api_key, **kw)
        self.reply = reply
        # Polls a prediction needs before it succeeds (0: done on creation with Prefer: wait).
        self.polls_to_finish = 0
        self.input_tokens = 12
        self.output_tokens = 6
        self.predictions: dict[str, Json] = {}
        self._progress: dict[str, int] = {}
        self._outcome: dict[str, str] = {}

    @staticmethod
    def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
        body = {"title": title, "detail": detail, "status": status, **extra}
        return _FakeServer.json_response(body, status)

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        path = request.path
        if request.method == "GET" and path.startswith("/files/"):
            return web.Response(body=PNG_BYTES, content_type="image/png")
        if not self.bearer_ok(recorded):
            return self._problem(
                401, "Unauthenticated", "You did not pass a valid authentication token"
            )
        parts = path.strip("/").split("/")
        if request.method == "POST" and len(parts) == 5 and parts[:2] == ["v1", "models"]:
            if parts[4] != "predictions":
                return self._not_found()
            return self._create(recorded, f"{parts[2]}/{parts[3]}", scenario)
        if request.method == "POST" and parts == ["v1", "predictions"]:
            version = (recorded.json or {}).get("version")
            model = REPLICATE_VERSIONS.get(version) if isinstance(version, str) else None
            if model is None:
                return self._problem(422, "Invalid version or not permitted", "invalid version")
            return self._create(recorded, model, scenario)
        if len(parts) >= 3 and parts[:2] == ["v1", "predictions"] and parts[2] in self.predictions:
            if request.method == "GET" and len(parts) == 3:
                return self.json_response(self._advance(parts[2]))
            if request.method == "POST" and parts[3:] == ["cancel"]:
                return self.json_response(self._finish(parts[2], "canceled"))
        return self._not_found()

    def _not_found(self) -> web.Response:
        return self._problem(404, "Not found", "The requested resource could not be found.")

    def _invalid(self, model: str, values: Any) -> str | None:
        if not isinstance(values, dict):
            return "input is required"
        if not isinstance(values.get("prompt"), str) or not values["prompt"]:
            return "prompt: prompt is required"
        if model in REPLICATE_IMAGE_MODELS:
            ratio = values.get("aspect_ratio")
            if ratio is not None and ratio not in REPLICATE_ASPECT_RATIOS:
                return (
                    f"aspect_ratio: aspect_ratio must be one of {sorted(REPLICATE_ASPECT_RATIOS)}"
                )
            most = REPLICATE_IMAGE_MODELS[model]
            outputs = values.get("num_outputs")
            if outputs is not None and most is not None and not 1 <= outputs <= most:
                return f"num_outputs: Must be less than or equal to {most}"
        else:
            temperature = values.get("temperature")
            if temperature is not None and not 0 <= temperature <= 5:
                return "temperature: Must be less than or equal to 5"
            top_p = values.get("top_p")
            if top_p is not None and not 0 <= top_p <= 1:
                return "top_p: Must be less than or equal to 1"
        return None

    def _create(self, recorded: RecordedRequest, model: str, scenario: str) -> web.Response:
        if model not in REPLICATE_CHAT_MODELS and model not in REPLICATE_IMAGE_MODELS:
            return self._not_found()
        values = (recorded.json or {}).get("input")
        problem = self._invalid(model, values)
        if problem is not None or scenario == "error_422":
            detail = problem or "- input: seed must be an integer"
            return self._problem(422, "Input validation failed", detail, invalid_fields=[])
        assert isinstance(values, dict)
        prediction_id = secrets.token_hex(10)
        base = self.base_url
        prediction: Json = {
            "id": prediction_id,
            "model": model,
            "version": "hidden",
            "input": values,
            "logs": "",
            "output": None,
            "data_removed": False,
            "error": None,
            "status": "starting",
            "created_at": "2024-11-01T10:00:00.000Z",
            "urls": {
                "cancel": f"{base}/v1/predictions/{prediction_id}/cancel",
                "get": f"{base}/v1/predictions/{prediction_id}",
                "stream": f"{base}/v1/streams/{prediction_id}",
                "web": f"https://replicate.com/p/{prediction_id}",
            },
        }
        self.predictions[prediction_id] = prediction
        self._outcome[prediction_id] = scenario
        waits = "wait" in recorded.headers.get("prefer", "")
        self._progress[prediction_id] = (
            self.polls_to_finish if waits else max(self.polls_to_finish, 1)
        )
        if self._progress[prediction_id] == 0 and scenario != "never":
            self._complete(prediction_id)
        return self.json_response(prediction, 201)

    def _advance(self, prediction_id: str) -> Json:
        prediction = self.predictions[prediction_id]
        if prediction["status"] in ("succeeded", "failed", "canceled"):
            return prediction
        if self._outcome[prediction_id] == "never":
            prediction["status"] = "processing"
            return prediction
        self._progress[prediction_id] -= 1
        if self._progress[prediction_id] <= 0:
            self._complete(prediction_id)
        else:
            prediction["status"] = "processing"
        return prediction

    def _complete(self, prediction_id: str) -> None:
        prediction = self.predictions[prediction_id]
        if self._outcome[prediction_id] == "failed":
            prediction.update(status="failed", error="CUDA out of memory")
            return
        model = prediction["model"]
        if model in REPLICATE_IMAGE_MODELS:
            count = prediction["input"].get("num_outputs") or 1
            output: Any = [f"{self.base_url}/files/{prediction_id}-{i}.png" for i in range(count)]
            metrics: Json = {"predict_time": 1.2, "image_count": count}
        else:
            output = _split(self.reply, 4)
            metrics = {
                "predict_time": 0.4,
                "total_time": 0.5,
                "input_token_count": self.input_tokens,
                "output_token_count": self.output_tokens,
                "tokens_per_second": 15.0,
            }
        prediction.update(status="succeeded", output=output, metrics=metrics)
        prediction["completed_at"] = "2024-11-01T10:00:01.000Z"

    def _finish(self, prediction_id: str, status: str) -> Json:
        prediction = self.predictions[prediction_id]
        if prediction["status"] not in ("succeeded", "failed", "canceled"):
            prediction["status"] = status
        return prediction


# ---------------------------------------------------------------------- AIProxy library


class FakeAIProxyLibrary(_FakeServer):
    """AIProxy `POST /api/library/ask`: failures come as `{success: false, errCode}`."""

    thread_name = "fake-aiproxy-library"
    scenarios = frozenset({"ok", "error_code"})

    def __init__(
        self,
        api_key: str | None = "ap-key",
        library_id: str = "lib-42",
        reply: str = "The answer, from your documents.",
        **kw: Any,
    ) -> None:
        super().__init__(api_key, **kw)
        self.library_id = library_id
        self.reply = reply
        self.documents = [
            {"title": "Handbook", "url": "https://docs.example.com/handbook"},
            {"title": "FAQ", "url": "https://docs.example.com/faq"},
        ]

    @staticmethod
    def _failure(code: int, message: str) -> web.Response:
        return _FakeServer.json_response({"success": False, "errCode": code, "message": message})

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if (request.method, request.path) != ("POST", "/api/library/ask"):
            return web.Response(status=404)
        if not self.bearer_ok(recorded):
            return self.json_response(
                {"success": False, "errCode": 401, "message": "无效的Key"}, 401
            )
        payload = recorded.json
        if payload is None:
            return self._failure(1000, "请求体必须是 JSON")
        for name in ("model", "query", "libraryId"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                return self._failure(1001, f"参数 {name} 不能为空")
        if payload["libraryId"] != self.library_id or scenario == "error_code":
            return self._failure(2001, "知识库不存在")
        if payload.get("stream") is True:
            return await self.sse(request, self._events(payload["model"]))
        return self.json_response(
            {
                "success": True,
                "answer": self.reply,
                "documents": self.documents,
                "errCode": 0,
                "message": "",
            }
        )

    def _events(self, model: str) -> list[bytes]:
        def data(event: Json) -> bytes:
            return b"data:" + _dumps(event) + b"\n\n"

        events = [
            data({"content": piece, "finish": False, "model": model, "documents": []})
            for piece in _split(self.reply)
        ]
        events.append(
            data({"content": "", "finish": True, "model": model, "documents": self.documents})
        )
        return events
