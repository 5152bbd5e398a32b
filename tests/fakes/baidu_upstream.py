from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake Baidu ERNIE upstream (aip.baidubce.com): the OAuth token endpoint and the v1
# wenxinworkshop chat and embeddings endpoints, as a real HTTP server.
#
#     with FakeBaidu(client_id="ak", client_secret="sk") as fake:
#         fake.scenario = "function_call"
#         ...  # point the gateway at fake.base_url, key "ak|sk"
#         assert fake.token_requests == 1
#
# Like Baidu it answers every model-API failure with HTTP 200 and `{error_code,
# error_msg}`: 110 for an access token it never issued or revoked, 111 for an expired one,
# 336003 for invalid parameters, 18 for the QPS limit. It checks what a converting
# gateway most easily gets wrong: documented fields only, an odd number of messages that
# alternate user/assistant from a user turn (`function` answering a function call), text
# content, temperature in (0, 1], top_p in [0, 1], penalty_score in [1, 2], at most four
# stop words, known endpoints. Token lifetimes are settable (`token_ttl`) and a delay on
# the token endpoint (`token_delay`) makes concurrent exchanges observable.

__all__ = ["CHAT_ENDPOINTS", "SCENARIOS", "FakeBaidu", "RecordedRequest", "baidu_vector"]

SCENARIOS = frozenset({"ok", "function_call", "length", "rate_limit", "error_mid_stream"})
CHAT_ENDPOINTS = frozenset(
    {
        "completions_pro",
        "completions",
        "eb-instant",
        "ernie_speed",
        "ernie-speed-128k",
        "ernie-lite-8k",
        "ernie-tiny-8k",
        "ernie-3.5-8k-0205",
        "ernie-4.0-turbo-8k",
        "ernie-char-8k",
        "ernie-func-8k",
    }
)
EMBEDDING_ENDPOINTS = frozenset({"embedding-v1", "bge_large_zh", "bge_large_en", "tao_8k"})
CHAT_FIELDS = frozenset(
    {
        "messages",
        "functions",
        "temperature",
        "top_p",
        "penalty_score",
        "stream",
        "system",
        "stop",
        "disable_search",
        "enable_citation",
        "enable_trace",
        "max_output_tokens",
        "response_format",
        "user_id",
        "tool_choice",
    }
)
API_PREFIX = "/rpc/2.0/ai_custom/v1/wenxinworkshop/"


class BaiduError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def invalid(message: str) -> BaiduError:
    return BaiduError(336003, message)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: dict[str, Any] | None = None


def baidu_vector(text: str, dimensions: int = 8) -> list[float]:
    seed = sum(text.encode()) or 1
    return [round(((seed * (i + 3)) % 997) / 997 - 0.5, 6) for i in range(dimensions)]


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _check_range(payload: dict[str, Any], name: str, low: float, high: float, open_low: bool):
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{name} type error")
    if value > high or value < low or (open_low and value == low):
        raise invalid(f"{name} out of range")


def validate_chat(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - CHAT_FIELDS)
    if unknown:
        raise invalid(f"unknown field: {', '.join(unknown)}")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("the length of messages must be an odd number")
    if len(messages) % 2 == 0:
        raise invalid("the length of messages must be an odd number")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise invalid(f"messages[{i}].content must be a string")
        role = message.get("role")
        expected = ("user", "function") if i % 2 == 0 else ("assistant",)
        if role not in expected:
            raise invalid("the role of message with odd index in the messages must be user")
        if role == "function":
            previous = messages[i - 1] if i else {}
            if not message.get("name") or not isinstance(previous.get("function_call"), dict):
                raise invalid(f"messages[{i}] function message must answer a function_call")
            if previous["function_call"].get("name") != message["name"]:
                raise invalid(f"messages[{i}].name does not match the function call")
        if role == "user" and not message["content"]:
            raise invalid(f"messages[{i}].content can not be empty")
    _check_range(payload, "temperature", 0.0, 1.0, open_low=True)
    _check_range(payload, "top_p", 0.0, 1.0, open_low=False)
    _check_range(payload, "penalty_score", 1.0, 2.0, open_low=False)
    stop = payload.get("stop")
    if stop is not None and not (
        isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop)
    ):
        raise invalid("stop must be a list of at most 4 strings")
    max_output = payload.get("max_output_tokens")
    if max_output is not None and not (isinstance(max_output, int) and max_output >= 2):
        raise invalid("max_output_tokens out of range")
    if "system" in payload and not isinstance(payload["system"], str):
        raise invalid("system must be a string")
    for function in payload.get("functions") or ():
        if not isinstance(function, dict) or not function.get("name"):
            raise invalid("functions need a name")
        if "description" not in function or not isinstance(function.get("parameters"), dict):
            raise invalid("functions need a description and parameters")


def validate_embeddings(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - {"input", "user_id"})
    if unknown:
        raise invalid(f"unknown field: {', '.join(unknown)}")
    texts = payload.get("input")
    if not isinstance(texts, list) or not texts or len(texts) > 16:
        raise invalid("input must be a list of 1 to 16 strings")
    if not all(isinstance(text, str) and text for text in texts):
        raise invalid("input must be a list of non-empty strings")


class FakeBaidu(FakeServer[RecordedRequest]):
    scenarios = SCENARIOS
    thread_name = "fake-baidu"

    def __init__(
        self,
        client_id: str = "baidu-ak",
        client_secret: str = "baidu-sk",
        reply: str = "您好，我是文心一言。",
        prompt_tokens: int = 10,
        completion_tokens: int = 6,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.client_id = client_id
        self.client_secret = client_secret
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.token_ttl = 2_592_000  # seconds, Baidu's 30 days
        self.token_delay = 0.0  # seconds the token endpoint takes
        self.function_arguments = '{"location":"北京"}'

        self._tokens: dict[str, float] = {}  # issued token -> expiry (time.time())
        self._token_requests = 0

    # ------------------------------------------------------------------ public API

    @property
    def key(self) -> str:
        return f"{self.client_id}|{self.client_secret}"

    @property
    def token_requests(self) -> int:
        with self._lock:
            return self._token_requests

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def revoke_tokens(self) -> None:
        """Forget every issued token: the next model call gets error 110."""
        with self._lock:
            self._tokens.clear()

    def expire_tokens(self) -> None:
        """Make every issued token expired: the next model call gets error 111."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    @property
    def model_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(API_PREFIX)]

    @property
    def last_request(self) -> RecordedRequest:
        requests = self.model_requests
        if not requests:
            raise LookupError("FakeBaidu has not received any model request")
        return requests[-1]

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._token_requests = 0

    # ------------------------------------------------------------------ requests

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        query, headers = dict(request.query), lower_headers(request)
        return RecordedRequest(
            request.method, request.path, query, headers, body, json_object(body)
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Only model calls take a scenario: token requests leave queued failures alone.
        parsed = (await self._receive(request)).json
        if request.path == "/oauth/2.0/token":
            return await self._token(request)
        if request.method != "POST" or not request.path.startswith(API_PREFIX):
            return web.json_response({"error_code": 3, "error_msg": "Unsupported openapi method"})
        scenario = self._next_scenario()
        try:
            self._check_token(request.query.get("access_token", ""))
            kind, _, endpoint = request.path.removeprefix(API_PREFIX).partition("/")
            if parsed is None:
                raise BaiduError(336002, "Invalid JSON")
            if kind == "chat" and endpoint in CHAT_ENDPOINTS:
                validate_chat(parsed)
                if scenario == "rate_limit":
                    raise BaiduError(18, "Open api qps request limit reached")
                if parsed.get("stream") is True:
                    return await self._stream(request, parsed, scenario)
                return self._json(self._answer(parsed, scenario))
            if kind == "embeddings" and endpoint in EMBEDDING_ENDPOINTS:
                validate_embeddings(parsed)
                return self._json(self._embeddings(parsed))
            raise BaiduError(3, "Unsupported openapi method")
        except BaiduError as error:
            return self._json({"error_code": error.code, "error_msg": str(error), "id": self._id()})

    async def _token(self, request: web.Request) -> web.Response:
        with self._lock:
            self._token_requests += 1
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        query = request.query
        if request.method != "POST":
            return web.json_response(
                {"error": "invalid_request", "error_description": "method not allowed"},
                status=400,
            )
        if query.get("grant_type") != "client_credentials":
            return web.json_response(
                {"error": "unsupported_grant_type", "error_description": "invalid grant type"},
                status=400,
            )
        if query.get("client_id") != self.client_id:
            return web.json_response(
                {"error": "invalid_client", "error_description": "unknown client id"},
                status=401,
            )
        if query.get("client_secret") != self.client_secret:
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"},
                status=401,
            )
        token = (
            f"24.{secrets.token_hex(16)}.{self.token_ttl}.{int(time.time())}-{secrets.token_hex(4)}"
        )
        with self._lock:
            self._tokens[token] = time.time() + self.token_ttl
        return web.json_response(
            {
                "refresh_token": f"25.{secrets.token_hex(16)}",
                "expires_in": self.token_ttl,
                "session_key": secrets.token_hex(16),
                "access_token": token,
                "scope": "public brain_all_scope wenxinworkshop_mgr ai_custom_yiyan_com",
                "session_secret": secrets.token_hex(16),
            }
        )

    def _check_token(self, token: str) -> None:
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None:
            raise BaiduError(110, "Access token invalid or no longer valid")
        if expiry <= time.time():
            raise BaiduError(111, "Access token expired")

    def _json(self, data: Any) -> web.Response:
        return web.Response(
            body=json.dumps(data, ensure_ascii=False).encode(), content_type="application/json"
        )

    @staticmethod
    def _id() -> str:
        return f"as-{secrets.token_hex(5)}"

    def _usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def _function_call(self, payload: dict[str, Any], scenario: str) -> dict[str, Any] | None:
        functions = payload.get("functions")
        if scenario != "function_call" or not functions:
            return None
        if payload["messages"][-1]["role"] == "function":
            return None
        forced = payload.get("tool_choice")
        name = forced["function"]["name"] if forced else functions[0]["name"]
        return {
            "name": name,
            "thoughts": "用户想知道天气，我需要调用天气工具。",
            "arguments": self.function_arguments,
        }

    def _answer(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        call = self._function_call(payload, scenario)
        answer: dict[str, Any] = {
            "id": self._id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "result": "" if call else self.reply,
            "is_truncated": scenario == "length",
            "need_clear_history": False,
            "finish_reason": "length" if scenario == "length" else "normal",
            "usage": self._usage(),
        }
        if call is not None:
            answer["function_call"] = call
            answer["finish_reason"] = "function_call"
        return answer

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], scenario: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        answer = self._answer(payload, scenario)
        pieces = _split(answer["result"]) if answer["result"] else [""]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            if scenario == "error_mid_stream" and i == 1:
                error = {"error_code": 336100, "error_msg": "Internal error, try again later"}
                await response.write(f"data: {json.dumps(error)}\n\n".encode())
                break
            chunk = {
                **{k: v for k, v in answer.items() if k != "function_call"},
                "sentence_id": i,
                "is_end": last,
                "result": piece,
                "finish_reason": answer["finish_reason"] if last else "normal",
                # Streamed chunks count the prompt; the total grows to the full count.
                "usage": {
                    "prompt_tokens": self.prompt_tokens,
                    "completion_tokens": 0,
                    "total_tokens": self.prompt_tokens + (self.completion_tokens if last else 0),
                },
            }
            if last and "function_call" in answer:
                chunk["function_call"] = answer["function_call"]
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        await response.write_eof()
        return response

    def _embeddings(self, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": self._id(),
            "object": "embedding_list",
            "created": int(time.time()),
            "data": [
                {"object": "embedding", "embedding": baidu_vector(text), "index": i}
                for i, text in enumerate(payload["input"])
            ],
            "usage": {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens},
        }
