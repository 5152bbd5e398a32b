from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake Tencent Hunyuan upstream: a real HTTP server speaking TencentCloud API 3.0.
#
#     with FakeTencent(secret_id="AKID...", secret_key="...") as fake:
#         fake.scenario = "tool_call"
#         ...  # point the gateway at fake.base_url
#         assert fake.last_request.action == "ChatCompletions"
#
# Every call is `POST /` named by X-TC-Action (ChatCompletions, GetEmbedding) and
# X-TC-Version 2023-09-01. The fake recomputes the TC3-HMAC-SHA256 signature from what it
# received (signed headers, body, X-TC-Timestamp) with its own signer and refuses a wrong
# one, an unknown SecretId, a credential scope of another date or service, and a timestamp
# more than five minutes off, as Tencent does. Errors arrive with HTTP 200 as
# `{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`. It is as strict as Hunyuan
# where a converting gateway can go wrong: unknown parameters, roles and their order (one
# leading system message, then user/tool and assistant in turns, ending with user or tool),
# empty Content, Contents (images) outside hunyuan-vision, Tool Parameters that are not a
# JSON string, Temperature in [0, 2] and TopP in [0, 1].

__all__ = ["CHAT_MODELS", "SCENARIOS", "FakeTencent", "RecordedRequest", "hunyuan_vector"]

VERSION = "2023-09-01"
CHAT_MODELS = frozenset(
    {"hunyuan-lite", "hunyuan-standard", "hunyuan-pro", "hunyuan-turbo", "hunyuan-vision"}
)
VISION_MODELS = frozenset({"hunyuan-vision"})
CHAT_FIELDS = frozenset(
    {
        "Model",
        "Messages",
        "Stream",
        "StreamModeration",
        "TopP",
        "Temperature",
        "EnableEnhancement",
        "Tools",
        "ToolChoice",
        "CustomTool",
        "SearchInfo",
        "Citation",
        "EnableSpeedSearch",
        "EnableMultimedia",
        "EnableDeepSearch",
        "Seed",
        "ForceSearchEnhancement",
        "Stop",
        "EnableRecommendedQuestions",
        "EnableDeepRead",
    }
)
MESSAGE_FIELDS = frozenset({"Role", "Content", "Contents", "ToolCallId", "ToolCalls"})
ERROR_SCENARIOS = {
    "rate_limited": ("RequestLimitExceeded", "Your current request rate exceeds the limit."),
    "internal": ("InternalError", "An internal error has occurred. Retry your request."),
    "not_activated": ("FailedOperation.ServiceNotActivated", "The service is not activated."),
}
SCENARIOS = frozenset(ERROR_SCENARIOS) | {"ok", "tool_call", "sensitive", "error_mid_stream"}
NOTE = "以上内容为AI生成，不代表开发者立场，请勿删除或修改本标记"
AUTHORIZATION = re.compile(
    r"^TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[^/]+)"
    r"/tc3_request, SignedHeaders=(?P<signed>[a-z0-9;-]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


class TencentError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> TencentError:
    return TencentError("InvalidParameter", message)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    json: dict[str, Any] | None = None

    @property
    def action(self) -> str:
        return self.headers.get("x-tc-action", "")


def hunyuan_vector(text: str, dimensions: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(digest[i % len(digest)] / 255, 6) for i in range(dimensions)]


def _split(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# ---------------------------------------------------------------------- signature


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def expected_signature(
    secret_key: str, headers: dict[str, str], signed: list[str], body: bytes, timestamp: int
) -> str:
    """TC3-HMAC-SHA256 as Tencent's signature v3 document spells it out, step by step."""
    canonical_headers = "".join(
        f"{name}:{headers.get(name, '').strip().lower()}\n" for name in signed
    )
    canonical = "\n".join(
        ["POST", "/", "", canonical_headers, ";".join(signed), hashlib.sha256(body).hexdigest()]
    )
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    string_to_sign = "\n".join(
        [
            "TC3-HMAC-SHA256",
            str(timestamp),
            f"{date}/hunyuan/tc3_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    secret_date = _hmac(("TC3" + secret_key).encode(), date)
    secret_signing = _hmac(_hmac(secret_date, "hunyuan"), "tc3_request")
    return hmac.new(secret_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------- validation


def _check_number(payload: dict[str, Any], name: str, low: float, high: float) -> None:
    value = payload.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise TencentError(
            "InvalidParameterValue", f"The value of parameter `{name}` must be in [{low}, {high}]."
        )


def _check_tool(tool: Any, where: str) -> None:
    function = tool.get("Function") if isinstance(tool, dict) else None
    if tool.get("Type") != "function" or not isinstance(function, dict) or not function.get("Name"):
        raise invalid(f"{where} must be a function with a Name")
    parameters = function.get("Parameters")
    if parameters is not None:
        if not isinstance(parameters, str):
            raise invalid(f"{where}.Function.Parameters must be a JSON string")
        try:
            json.loads(parameters)
        except ValueError:
            raise invalid(f"{where}.Function.Parameters is not valid JSON") from None


def _check_message(message: Any, where: str, model: str) -> str:
    if not isinstance(message, dict):
        raise invalid(f"{where} must be an object")
    for key in message:
        if key not in MESSAGE_FIELDS:
            raise TencentError(
                "UnknownParameter", f"The parameter `{where}.{key}` is not recognized."
            )
    role = message.get("Role")
    if role not in ("system", "user", "assistant", "tool"):
        raise invalid(f"{where}.Role must be system, user, assistant or tool")
    if "Contents" in message:
        if model not in VISION_MODELS:
            raise invalid(f"{where}.Contents is only supported by hunyuan-vision")
        if "Content" in message:
            raise invalid(f"{where}: Content and Contents cannot both be set")
        for item in message["Contents"]:
            if item.get("Type") == "text" and item.get("Text"):
                continue
            if item.get("Type") == "image_url" and (item.get("ImageUrl") or {}).get("Url"):
                continue
            raise invalid(f"{where}.Contents has an invalid item")
    elif not message.get("Content") and not message.get("ToolCalls"):
        raise invalid(f"{where}.Content must not be empty")
    if role == "tool" and not message.get("ToolCallId"):
        raise invalid(f"{where}.ToolCallId is required for tool messages")
    return str(role)


def validate_chat(payload: dict[str, Any]) -> None:
    for key in payload:
        if key not in CHAT_FIELDS:
            raise TencentError("UnknownParameter", f"The parameter `{key}` is not recognized.")
    model = payload.get("Model")
    if model not in CHAT_MODELS:
        raise TencentError("InvalidParameterValue", f"The model `{model}` does not exist.")
    messages = payload.get("Messages")
    if not isinstance(messages, list) or not messages:
        raise TencentError("MissingParameter", "The parameter `Messages` is missing.")
    roles = [_check_message(m, f"Messages.{i}", str(model)) for i, m in enumerate(messages)]
    if "system" in roles[1:]:
        raise invalid("Messages: only the first message may be system")
    turns = roles[1:] if roles[0] == "system" else roles
    for i, role in enumerate(turns):
        expected = ("user", "tool") if i % 2 == 0 else ("assistant",)
        if role not in expected:
            raise invalid("Messages: user (or tool) and assistant must alternate, user first")
    if not turns or turns[-1] not in ("user", "tool"):
        raise invalid("Messages: the last message must be user or tool")
    _check_number(payload, "Temperature", 0.0, 2.0)
    _check_number(payload, "TopP", 0.0, 1.0)
    if "Stream" in payload and not isinstance(payload["Stream"], bool):
        raise invalid("Stream must be a boolean")
    for i, tool in enumerate(payload.get("Tools") or ()):
        _check_tool(tool, f"Tools.{i}")
    choice = payload.get("ToolChoice")
    if choice is not None and choice not in ("none", "auto", "custom"):
        raise invalid("ToolChoice must be none, auto or custom")
    if choice == "custom":
        _check_tool(payload.get("CustomTool") or {}, "CustomTool")


# ---------------------------------------------------------------------- the fake


class FakeTencent(FakeServer[RecordedRequest]):
    scenarios = SCENARIOS
    thread_name = "fake-tencent"

    def __init__(
        self,
        secret_id: str = "AKIDfakeTencentSecretId",
        secret_key: str = "fakeTencentSecretKey",
        reply: str = "Hello from fake Hunyuan.",
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.function_args = '{"location": "Paris"}'
        self.embedding_dimensions = 8
        # How far the fake's clock may be from the signer's, as Tencent allows.
        self.max_clock_skew = 300

    # ------------------------------------------------------------------ public API

    @property
    def key(self) -> str:
        """The channel key One API takes: AppId|SecretId|SecretKey."""
        return f"1300000000|{self.secret_id}|{self.secret_key}"

    # ------------------------------------------------------------------ entry

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._receive(request)
        try:
            if request.method != "POST" or request.path != "/":
                raise TencentError("InvalidAction", "Only POST / is served.")
            self._check_signature(recorded)
            if recorded.headers.get("x-tc-version") != VERSION:
                raise TencentError("NoSuchVersion", "The API version does not exist.")
            if recorded.json is None:
                raise TencentError("InvalidParameter", "The body is not valid JSON.")
            scenario = self._next_scenario()
            if recorded.action == "GetEmbedding":
                return self._json(self._embeddings(recorded.json))
            if recorded.action != "ChatCompletions":
                raise TencentError("InvalidAction", f"The action `{recorded.action}` is unknown.")
            validate_chat(recorded.json)
            if scenario in ERROR_SCENARIOS:
                raise TencentError(*ERROR_SCENARIOS[scenario])
            if recorded.json.get("Stream"):
                return await self._stream(request, recorded.json, scenario)
            return self._json(self._answer(recorded.json, scenario))
        except TencentError as error:
            return self._json(
                {"Error": {"Code": error.code, "Message": error.message}, "RequestId": _id()}
            )

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        return RecordedRequest(
            request.method, request.path, lower_headers(request), body, json_object(body)
        )

    def _check_signature(self, recorded: RecordedRequest) -> None:
        match = AUTHORIZATION.match(recorded.headers.get("authorization", ""))
        if match is None:
            raise TencentError("AuthFailure.InvalidAuthorization", "Authorization is invalid.")
        if match["id"] != self.secret_id:
            raise TencentError("AuthFailure.SecretIdNotFound", "The SecretId is not found.")
        try:
            timestamp = int(recorded.headers.get("x-tc-timestamp", ""))
        except ValueError:
            raise TencentError("MissingParameter", "X-TC-Timestamp is missing.") from None
        if abs(time.time() - timestamp) > self.max_clock_skew:
            raise TencentError("AuthFailure.SignatureExpire", "The signature has expired.")
        date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
        signed = match["signed"].split(";")
        if match["date"] != date or match["service"] != "hunyuan":
            raise TencentError("AuthFailure.InvalidAuthorization", "The credential scope is wrong.")
        if not {"content-type", "host"} <= set(signed) or signed != sorted(signed):
            raise TencentError("AuthFailure.InvalidAuthorization", "SignedHeaders is invalid.")
        expected = expected_signature(
            self.secret_key, recorded.headers, signed, recorded.body, timestamp
        )
        if not hmac.compare_digest(expected, match["signature"]):
            raise TencentError(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated. Please check your signature "
                "is correct.",
            )

    # ------------------------------------------------------------------ answers

    def _json(self, response: dict[str, Any]) -> web.Response:
        return web.Response(
            body=json.dumps({"Response": response}, ensure_ascii=False).encode(),
            content_type="application/json",
        )

    def _usage(self, completion: int) -> dict[str, int]:
        return {
            "PromptTokens": self.prompt_tokens,
            "CompletionTokens": completion,
            "TotalTokens": self.prompt_tokens + completion,
        }

    def _tool(self, payload: dict[str, Any]) -> str | None:
        tools = payload.get("Tools") or []
        if not tools or payload.get("ToolChoice") == "none":
            return None
        if payload["Messages"][-1]["Role"] == "tool":
            return None
        if payload.get("ToolChoice") == "custom":
            return str(payload["CustomTool"]["Function"]["Name"])
        return str(tools[0]["Function"]["Name"])

    def _text(self, payload: dict[str, Any]) -> str:
        text = self.reply
        for word in payload.get("Stop") or ():
            if word in text:
                text = text[: text.index(word)]
        return text

    def _answer(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        tool = self._tool(payload)
        message: dict[str, Any] = {"Role": "assistant", "Content": ""}
        reason = "stop"
        if tool is not None:
            message["ToolCalls"] = [
                {
                    "Id": f"call_{uuid.uuid4().hex[:20]}",
                    "Type": "function",
                    "Function": {"Name": tool, "Arguments": self.function_args},
                }
            ]
            reason = "tool_calls"
        else:
            message["Content"] = self._text(payload)
            reason = "sensitive" if scenario == "sensitive" else "stop"
        return {
            "RequestId": _id(),
            "Note": NOTE,
            "Choices": [{"Index": 0, "Message": message, "FinishReason": reason}],
            "Created": int(time.time()),
            "Id": _id(),
            "Usage": self._usage(self.completion_tokens),
        }

    def _deltas(self, payload: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
        tool = self._tool(payload)
        if tool is not None:
            call_id = f"call_{uuid.uuid4().hex[:20]}"
            pieces = _split(self.function_args, 2)
            deltas = [
                {
                    "Role": "assistant",
                    "Content": "",
                    "ToolCalls": [
                        {
                            "Id": call_id,
                            "Type": "function",
                            "Function": {"Name": tool if i == 0 else "", "Arguments": piece},
                        }
                    ],
                }
                for i, piece in enumerate(pieces)
            ]
            return [{"Delta": d, "FinishReason": ""} for d in deltas] + [
                {"Delta": {"Role": "assistant", "Content": ""}, "FinishReason": "tool_calls"}
            ]
        parts = _split(self._text(payload))
        last = "sensitive" if scenario == "sensitive" else "stop"
        return [
            {
                "Delta": {"Role": "assistant", "Content": part},
                "FinishReason": last if i == len(parts) - 1 else "",
            }
            for i, part in enumerate(parts)
        ]

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], scenario: str
    ) -> web.StreamResponse:
        request_id = _id()
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": "text/event-stream", "X-TC-RequestId": request_id},
        )
        await response.prepare(request)
        choices = self._deltas(payload, scenario)
        for i, choice in enumerate(choices, start=1):
            event: dict[str, Any] = {
                "Note": NOTE,
                "Choices": [choice],
                "Created": int(time.time()),
                "Id": request_id,
                "Usage": self._usage(self.completion_tokens if i == len(choices) else i),
            }
            if scenario == "error_mid_stream" and i == 2:
                event = {
                    "Note": NOTE,
                    "Choices": [
                        {"Delta": {"Role": "assistant", "Content": ""}, "FinishReason": ""}
                    ],
                    "Id": request_id,
                    "ErrorMsg": {"Msg": "Internal service error.", "Code": 4000},
                }
            data = json.dumps(event, ensure_ascii=False)
            await response.write(f"data: {data}\n\n".encode())
            if "ErrorMsg" in event:
                break
        await response.write_eof()
        return response

    def _embeddings(self, payload: dict[str, Any]) -> dict[str, Any]:
        for key in payload:
            if key not in ("Input", "InputList"):
                raise TencentError("UnknownParameter", f"The parameter `{key}` is not recognized.")
        texts = payload.get("InputList") or ([payload["Input"]] if payload.get("Input") else [])
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise TencentError("MissingParameter", "The parameter `Input` is missing.")
        tokens = sum(len(t.split()) for t in texts)
        return {
            "Data": [
                {
                    "Embedding": hunyuan_vector(t, self.embedding_dimensions),
                    "Index": i,
                    "Object": "embedding",
                }
                for i, t in enumerate(texts)
            ],
            "Usage": {"PromptTokens": tokens, "TotalTokens": tokens},
            "RequestId": _id(),
        }


def _id() -> str:
    return str(uuid.uuid4())
