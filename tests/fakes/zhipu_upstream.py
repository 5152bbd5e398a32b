from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web

from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake Zhipu AI upstream (open.bigmodel.cn): a real HTTP server speaking API v4 (chat,
# embeddings, CogView images) and the legacy v3 model API (`invoke` / `sse-invoke`).
#
#     with FakeZhipu(api_key="id123.secret456") as fake:
#         fake.scenario = "tool_call"
#         ...  # point the gateway at fake.base_url
#         assert fake.last_request.json["temperature"] <= 1
#
# Authentication is checked the way Zhipu does it: the `Authorization` header must be a
# JWT (no `Bearer`) signed HS256 with the key's secret, header `sign_type: SIGN`, claims
# `api_key` (the key's id), `exp` and `timestamp` in milliseconds, not expired. It is
# decoded with PyJWT, independently of the gateway's own signing code. Requests are
# checked as strictly as Zhipu checks them where a converting gateway can go wrong:
# documented fields only, temperature in (0, 1], top_p in (0, 1), a single stop word,
# images as URLs or bare base64 (no `data:` prefix), list content for vision models only.

__all__ = ["ERROR_SCENARIOS", "SCENARIOS", "FakeZhipu", "RecordedRequest", "zhipu_vector"]

ERROR_SCENARIOS = frozenset({"error_429", "error_500", "v3_error"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "tool_call", "sensitive", "length", "v3_interrupted"}

V4_CHAT_FIELDS = frozenset(
    {
        "model",
        "messages",
        "stream",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "tools",
        "tool_choice",
        "user_id",
        "request_id",
        "do_sample",
        "response_format",
        "thinking",
    }
)
V3_FIELDS = frozenset({"prompt", "temperature", "top_p", "request_id", "incremental"})
ROLES = frozenset({"system", "user", "assistant", "tool"})
EMBEDDING_MODELS = frozenset({"embedding-2", "embedding-3"})
IMAGE_SIZES = frozenset(
    {"1024x1024", "768x1344", "864x1152", "1344x768", "1152x864", "1440x720", "720x1440"}
)


class InvalidRequest(Exception):
    """A request Zhipu refuses; `code` is Zhipu's business code."""

    def __init__(self, message: str, code: str = "1214", status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: dict[str, Any] | None = None
    claims: dict[str, Any] | None = None  # the verified JWT claims


def zhipu_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic embedding of `text`."""
    seed = sum(text.encode()) or 1
    return [round(((seed * (i + 7)) % 1000) / 1000 - 0.5, 6) for i in range(dimensions)]


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------- validation


def _check_range(payload: dict[str, Any], name: str, low: float, high: float, closed: bool) -> None:
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} 参数类型错误")
    upper_ok = value <= high if closed else value < high
    if not (value > low and upper_ok):
        bracket = "]" if closed else ")"
        raise InvalidRequest(f"{name}取值范围是：({low}, {high}{bracket}")


def _check_image_url(part: dict[str, Any]) -> None:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url:
        raise InvalidRequest("image_url.url 不能为空", "1210")
    if url.startswith("data:"):
        raise InvalidRequest("图片输入格式/解析错误", "1210")


def _check_message(message: Any, i: int, model: str) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"messages[{i}] 格式错误")
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"messages[{i}].role 不支持：{role}")
    content = message.get("content")
    if isinstance(content, list):
        if not model.startswith("glm-4v") or role != "user":
            raise InvalidRequest(f"messages[{i}].content 类型错误，应为字符串")
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "image_url":
                _check_image_url(part)
            elif kind != "text":
                raise InvalidRequest(f"messages[{i}].content 不支持的类型：{kind}")
    elif content is not None and not isinstance(content, str):
        raise InvalidRequest(f"messages[{i}].content 类型错误")
    if role == "tool" and not message.get("tool_call_id"):
        raise InvalidRequest(f"messages[{i}].tool_call_id 不能为空")


def validate_chat(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - V4_CHAT_FIELDS)
    if unknown:
        raise InvalidRequest(f"不支持的参数：{', '.join(unknown)}")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model 不能为空", "1211")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages 不能为空")
    for i, message in enumerate(messages):
        _check_message(message, i, model)
    _check_range(payload, "temperature", 0.0, 1.0, closed=True)
    _check_range(payload, "top_p", 0.0, 1.0, closed=False)
    stop = payload.get("stop")
    if stop is not None and not (
        isinstance(stop, list) and len(stop) == 1 and isinstance(stop[0], str)
    ):
        raise InvalidRequest("stop 目前仅支持单个停止词")
    choice = payload.get("tool_choice")
    if choice is not None and choice != "auto":
        raise InvalidRequest("tool_choice 目前仅支持 auto")
    user_id = payload.get("user_id")
    if user_id is not None and not (isinstance(user_id, str) and 6 <= len(user_id) <= 128):
        raise InvalidRequest("user_id 长度需在 6 到 128 之间")


def validate_v3(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - V3_FIELDS)
    if unknown:
        raise InvalidRequest(f"不支持的参数：{', '.join(unknown)}")
    prompt = payload.get("prompt")
    if not isinstance(prompt, list) or not prompt:
        raise InvalidRequest("prompt 不能为空")
    for i, message in enumerate(prompt):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"prompt[{i}].role 只能是 user 或 assistant")
        if not isinstance(message.get("content"), str):
            raise InvalidRequest(f"prompt[{i}].content 应为字符串")
    _check_range(payload, "temperature", 0.0, 1.0, closed=True)
    _check_range(payload, "top_p", 0.0, 1.0, closed=False)


def validate_embeddings(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - {"model", "input", "dimensions"})
    if unknown:
        raise InvalidRequest(f"不支持的参数：{', '.join(unknown)}")
    model = payload.get("model")
    if model not in EMBEDDING_MODELS:
        raise InvalidRequest(f"模型不存在：{model}", "1211")
    value = payload.get("input")
    if isinstance(value, list):
        if model == "embedding-2" or not value or not all(isinstance(v, str) for v in value):
            raise InvalidRequest("input 应为字符串")
    elif not isinstance(value, str) or not value:
        raise InvalidRequest("input 不能为空")


def validate_image(payload: dict[str, Any]) -> None:
    unknown = sorted(set(payload) - {"model", "prompt", "size", "quality", "user_id"})
    if unknown:
        raise InvalidRequest(f"不支持的参数：{', '.join(unknown)}")
    model = payload.get("model")
    if not isinstance(model, str) or not model.startswith("cogview"):
        raise InvalidRequest(f"模型不存在：{model}", "1211")
    if not isinstance(payload.get("prompt"), str) or not payload["prompt"]:
        raise InvalidRequest("prompt 不能为空")
    size = payload.get("size")
    if size is not None and size not in IMAGE_SIZES:
        raise InvalidRequest("size 不支持")


# ---------------------------------------------------------------------- server


class FakeZhipu(FakeServer[RecordedRequest]):
    """A local open.bigmodel.cn with switchable scenarios; attributes may be changed from
    the test thread at any time (the server reads them per request)."""

    scenarios = SCENARIOS
    thread_name = "fake-zhipu"

    def __init__(
        self,
        api_key: str = "zhipu-id.zhipu-secret",
        reply: str = "你好！我是智谱清言。",
        prompt_tokens: int = 12,
        completion_tokens: int = 8,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.api_key = api_key
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.tool_arguments = '{"location": "北京"}'
        self.image_url = "https://sfile.chatglm.cn/testpath/fake.png"

    # ------------------------------------------------------------------ auth

    def verify_token(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; raises InvalidRequest (Zhipu's 1000s) otherwise."""
        if not token:
            raise InvalidRequest("Header 中未收到 Authorization 参数", "1001", 401)
        if token.lower().startswith("bearer "):
            token = token[7:]  # Zhipu also accepts it; the gateway should not need it
        key_id, secret = self.api_key.split(".")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError as error:
            raise InvalidRequest(f"Authorization Token 非法：{error}", "1002", 401) from None
        if header.get("sign_type") != "SIGN" or header.get("alg") != "HS256":
            raise InvalidRequest("Authorization Token 非法：header", "1002", 401)
        if claims.get("api_key") != key_id:
            raise InvalidRequest("API Key 不存在", "1000", 401)
        exp, timestamp = claims.get("exp"), claims.get("timestamp")
        if not isinstance(exp, int) or not isinstance(timestamp, int):
            raise InvalidRequest("Authorization Token 非法：claims", "1002", 401)
        if exp <= _now_ms():
            raise InvalidRequest("Authorization Token 已过期", "1003", 401)
        if timestamp > _now_ms() + 60_000:
            raise InvalidRequest("Authorization Token 非法：timestamp", "1004", 401)
        return claims

    # ------------------------------------------------------------------ requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers, parsed = lower_headers(request), json_object(body)
        path = request.path.rstrip("/")
        v3 = path.startswith("/api/paas/v3/model-api/")
        # Recorded with the verified claims, so the token is checked first.
        try:
            claims = self.verify_token(headers.get("authorization", ""))
        except InvalidRequest as error:
            self._remember(RecordedRequest(request.method, path, headers, body, parsed))
            return self._failure(error, v3)
        self._remember(RecordedRequest(request.method, path, headers, body, parsed, claims))
        scenario = self._next_scenario()
        if request.method != "POST":
            return self._error(404, "1211", "Not Found")
        if parsed is None:
            return self._failure(InvalidRequest("请求体不是合法的 JSON"), v3)
        try:
            if v3:
                return await self._v3(request, path, parsed, scenario)
            if path == "/api/paas/v4/chat/completions":
                validate_chat(parsed)
                if scenario == "error_429":
                    return self._error(429, "1302", "您当前使用该API的并发数过高，请降低并发")
                if scenario == "error_500":
                    return self._error(500, "500", "服务内部错误，请稍后重试")
                if parsed.get("stream") is True:
                    return await self._stream(request, parsed, scenario)
                return self._json(self._completion(parsed, scenario))
            if path == "/api/paas/v4/embeddings":
                validate_embeddings(parsed)
                return self._json(self._embeddings(parsed))
            if path == "/api/paas/v4/images/generations":
                validate_image(parsed)
                return self._json({"created": int(time.time()), "data": [{"url": self.image_url}]})
        except InvalidRequest as error:
            return self._failure(error, v3)
        return self._error(404, "1211", "Not Found")

    def _json(self, data: Any, status: int = 200) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(data, ensure_ascii=False).encode(),
            content_type="application/json",
        )

    def _error(self, status: int, code: str, message: str) -> web.Response:
        return self._json({"error": {"code": code, "message": message}}, status)

    def _v3_error(self, code: int, message: str) -> web.Response:
        # v3 answers its errors with HTTP 200 and `success: false`.
        return self._json({"code": code, "msg": message, "success": False})

    def _failure(self, error: InvalidRequest, v3: bool) -> web.Response:
        if v3:
            return self._v3_error(int(error.code), str(error))
        return self._error(error.status, error.code, str(error))

    def _usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def _tool_call(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        tools = payload.get("tools")
        last = payload["messages"][-1]
        if not tools or last.get("role") == "tool":
            return None
        return {
            "id": "call_" + secrets.token_hex(10),
            "index": 0,
            "type": "function",
            "function": {"name": tools[0]["function"]["name"], "arguments": self.tool_arguments},
        }

    def _completion(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        call = self._tool_call(payload) if scenario == "tool_call" else None
        message: dict[str, Any] = {"role": "assistant", "content": self.reply}
        finish = {"sensitive": "sensitive", "length": "length"}.get(scenario, "stop")
        if call is not None:
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            finish = "tool_calls"
        return {
            "id": secrets.token_hex(12),
            "request_id": payload.get("request_id") or secrets.token_hex(8),
            "created": int(time.time()),
            "model": payload["model"],
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": self._usage(),
        }

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], scenario: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream;charset=UTF-8"})
        await response.prepare(request)
        completion = self._completion(payload, scenario)
        base = {"id": completion["id"], "created": completion["created"], "model": payload["model"]}
        choice = completion["choices"][0]
        message = choice["message"]
        deltas: list[dict[str, Any]] = []
        if message.get("tool_calls"):
            deltas.append({"role": "assistant", "tool_calls": message["tool_calls"]})
        else:
            deltas += [{"role": "assistant", "content": piece} for piece in _split(self.reply)]
        for delta in deltas:
            chunk = {**base, "choices": [{"index": 0, "delta": delta}]}
            await response.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        last = {
            **base,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": choice["finish_reason"],
                    "delta": {"role": "assistant", "content": ""},
                }
            ],
            "usage": completion["usage"],
        }
        await response.write(f"data: {json.dumps(last, ensure_ascii=False)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _embeddings(self, payload: dict[str, Any]) -> dict[str, Any]:
        texts = payload["input"] if isinstance(payload["input"], list) else [payload["input"]]
        dimensions = payload.get("dimensions") or 8
        return {
            "model": payload["model"],
            "object": "list",
            "data": [
                {"index": i, "object": "embedding", "embedding": zhipu_vector(t, dimensions)}
                for i, t in enumerate(texts)
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": 0,
                "total_tokens": self.prompt_tokens,
            },
        }

    # ------------------------------------------------------------------ v3

    async def _v3(
        self, request: web.Request, path: str, payload: dict[str, Any], scenario: str
    ) -> web.StreamResponse:
        model, _, method = path.removeprefix("/api/paas/v3/model-api/").partition("/")
        if not model.startswith(("chatglm_", "characterglm")):
            raise InvalidRequest(f"模型不存在：{model}", "1211")
        validate_v3(payload)
        if scenario == "v3_error":
            return self._v3_error(1261, "Prompt 超长")
        task_id = secrets.token_hex(10)
        if method == "invoke":
            data = {
                "request_id": payload.get("request_id") or secrets.token_hex(8),
                "task_id": task_id,
                "task_status": "SUCCESS",
                # v3 wraps the answer in a JSON string literal.
                "choices": [{"role": "assistant", "content": json.dumps(self.reply)}],
                "usage": self._usage(),
            }
            return self._json({"code": 200, "msg": "操作成功", "data": data, "success": True})
        if method != "sse-invoke":
            raise InvalidRequest(f"不支持的方法：{method}", "1212")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream;charset=UTF-8"})
        await response.prepare(request)
        pieces = _split(self.reply)
        for piece in pieces[:-1]:
            await response.write(f"event:add\nid:{task_id}\ndata:{piece}\n\n".encode())
        if scenario == "v3_interrupted":
            await response.write(f"event:interrupted\nid:{task_id}\ndata:触发敏感词\n\n".encode())
            await response.write_eof()
            return response
        # The last piece spans two `data:` lines: a text with a newline in it.
        await response.write(
            f"event:add\nid:{task_id}\ndata:{pieces[-1]}\ndata:第二行\n\n".encode()
        )
        meta = {
            "task_status": "SUCCESS",
            "usage": self._usage(),
            "task_id": task_id,
            "request_id": secrets.token_hex(8),
        }
        await response.write(
            f"event:finish\nid:{task_id}\ndata:\nmeta:{json.dumps(meta)}\n\n".encode()
        )
        await response.write_eof()
        return response
