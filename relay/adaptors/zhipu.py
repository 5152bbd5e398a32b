"""Zhipu AI (智谱, open.bigmodel.cn): GLM chat, embeddings and CogView images.

The channel key is `id.secret`; every request carries `Authorization: <JWT>` (no Bearer),
an HS256 token signed with the secret whose claims are Zhipu's: `api_key` (the id), `exp`
and `timestamp` in milliseconds, header `sign_type: SIGN`. Tokens live 24 hours (One API)
and are cached per key until shortly before they expire.

API v4 (`/api/paas/v4`) speaks OpenAI's chat format with Zhipu's narrower ranges and
serves every current model, embeddings and CogView. The legacy v3 model API
(`/api/paas/v3/model-api/{model}/invoke|sse-invoke`, a `prompt` list, answers wrapped in
`{code, msg, success, data}`, SSE events `add`/`finish`/`error`/`interrupted` with a `meta`
line carrying usage) still serves the `chatglm_*` models.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import openai_embedding_list
from relay.adaptors.openai import base_url
from relay.adaptors.token_cache import TokenCache
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME
from relay.upstream import is_retryable_status

TOKEN_TTL_SECONDS = 24 * 3600
# Re-sign this long before `exp`, so no request leaves with a token about to lapse.
TOKEN_REFRESH_MARGIN_SECONDS = 10 * 60
JWT_HEADER = {"alg": "HS256", "sign_type": "SIGN"}
# The models of the legacy v3 model API; everything else is v4.
V3_MODEL_PREFIXES = ("chatglm_", "characterglm")
# A base URL configured with the API prefix is forgiven.
API_SUFFIX = re.compile(r"/api/paas/v[34]/?$")
# Zhipu's ranges: temperature in (0, 1], top_p in (0, 1) (open at both ends).
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 1.0
MIN_TOP_P, MAX_TOP_P = 0.01, 0.99
USER_ID_LENGTH = range(6, 129)
FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "sensitive": "content_filter",
}
SYSTEM_ROLES = frozenset({"system", "developer"})
# Zhipu's own request fields that Zhipu-aware clients send; passed on as they are.
ZHIPU_FIELDS = ("request_id", "do_sample", "thinking")
DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(?:;[^;,]*)*;base64,", re.DOTALL)

_tokens = TokenCache(TOKEN_REFRESH_MARGIN_SECONDS)


def unsupported(message: str, code: str = "unsupported_mode") -> RelayError:
    return RelayError(400, message, code=code)


# ---------------------------------------------------------------------- auth


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def split_key(key: str) -> tuple[str, str]:
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise UpstreamFailure(
            RelayError(
                401,
                "invalid Zhipu channel key: expected `id.secret`",
                code="invalid_channel_key",
            ),
            retryable=True,
        )
    return parts[0], parts[1]


def sign_token(key: str, now_ms: int, ttl_seconds: int = TOKEN_TTL_SECONDS) -> str:
    """The JWT of Zhipu's documented example (PyJWT's `encode` with the same header and
    claims), signed here with hmac so that verifying it with PyJWT is an independent check."""
    api_key, secret = split_key(key)
    claims = {"api_key": api_key, "exp": now_ms + ttl_seconds * 1000, "timestamp": now_ms}
    signing_input = f"{_b64url(orjson.dumps(JWT_HEADER))}.{_b64url(orjson.dumps(claims))}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def auth_token(key: str) -> str:
    """The cached token of `key`, signed anew shortly before it expires."""

    def fetch() -> tuple[str, float]:
        return sign_token(key, int(time.time() * 1000)), TOKEN_TTL_SECONDS

    return _tokens.get(key, fetch)


def reset_tokens() -> None:
    _tokens.clear()


# ---------------------------------------------------------------------- request


def is_v3(model: str) -> bool:
    return model.startswith(V3_MODEL_PREFIXES)


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sampling(payload: dict[str, Any], *, greedy_switch: bool) -> dict[str, Any]:
    """temperature and top_p inside Zhipu's open ranges. OpenAI's temperature 0 (greedy) is
    v4's `do_sample: false`, under which Zhipu ignores both; v3 gets the smallest value."""
    out: dict[str, Any] = {}
    temperature = number(payload.get("temperature"))
    if temperature is not None and temperature <= 0 and greedy_switch:
        return {"do_sample": False}
    if temperature is not None:
        out["temperature"] = min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)
    top_p = number(payload.get("top_p"))
    if top_p is not None:
        out["top_p"] = min(max(top_p, MIN_TOP_P), MAX_TOP_P)
    return out


def text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text") or ""))
            elif isinstance(part, dict):
                raise unsupported(
                    f"content part type {part.get('type')!r} is not supported by this model",
                    "unsupported_content",
                )
        return "\n".join(texts)
    return str(content)


def image_part(part: dict[str, Any]) -> dict[str, Any]:
    """GLM-4V takes an http(s) URL or bare base64: the `data:...;base64,` prefix of OpenAI
    clients is refused, so it is cut off."""
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise RelayError(400, "image_url part without a url", code="invalid_image_url")
    return {"type": "image_url", "image_url": {"url": DATA_URL.sub("", url, count=1)}}


def v4_content(content: Any) -> Any:
    """Text-only part lists become a string (text models take nothing else); lists with
    media stay lists for the vision models."""
    if not isinstance(content, list):
        return "" if content is None else content
    if all(
        isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")
        for part in content
    ):
        return text_of(content)
    parts: list[Any] = []
    for part in content:
        if isinstance(part, str):
            parts.append({"type": "text", "text": part})
        elif isinstance(part, dict) and part.get("type") == "image_url":
            parts.append(image_part(part))
        elif isinstance(part, dict):
            parts.append(part)  # text, video_url, file parts: Zhipu's own shapes
    return parts


def v4_message(message: dict[str, Any]) -> dict[str, Any]:
    role = message.get("role")
    if role in SYSTEM_ROLES:
        return {"role": "system", "content": text_of(message.get("content"))}
    converted: dict[str, Any] = {"role": role, "content": v4_content(message.get("content"))}
    if role == "assistant" and isinstance(message.get("tool_calls"), list):
        converted["tool_calls"] = message["tool_calls"]
    if role == "tool":
        converted["tool_call_id"] = message.get("tool_call_id")
    return converted


def first_stop(stop: Any) -> list[str] | None:
    """Zhipu takes a single stop word; the first of the client's is the one kept."""
    if isinstance(stop, str) and stop:
        return [stop]
    if isinstance(stop, list):
        words = [word for word in stop if isinstance(word, str) and word]
        return words[:1] or None
    return None


def check_n(payload: dict[str, Any]) -> None:
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise unsupported("n > 1 is not supported by channel type Zhipu", "unsupported_parameter")


def convert_chat_request(payload: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """An OpenAI chat request as a v4 chat/completions body."""
    check_n(payload)
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    body: dict[str, Any] = {
        "model": model,
        "messages": [v4_message(m) for m in messages if isinstance(m, dict)],
    }
    if stream:
        body["stream"] = True
    body.update(sampling(payload, greedy_switch=True))
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        body["max_tokens"] = max_tokens
    stop = first_stop(payload.get("stop"))
    if stop:
        body["stop"] = stop
    tools = payload.get("tools")
    if not tools and isinstance(payload.get("functions"), list):
        tools = [{"type": "function", "function": f} for f in payload["functions"]]
    if isinstance(tools, list) and tools and payload.get("tool_choice") != "none":
        body["tools"] = tools
        body["tool_choice"] = "auto"  # the only choice Zhipu offers
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("text", "json_object"):
        body["response_format"] = {"type": response_format["type"]}
    user = payload.get("user")
    if isinstance(user, str) and len(user) in USER_ID_LENGTH:
        body["user_id"] = user
    for name in ZHIPU_FIELDS:
        if payload.get(name) is not None and name not in body:
            body[name] = payload[name]
    return body


def convert_v3_request(payload: dict[str, Any], stream: bool) -> dict[str, Any]:
    """An OpenAI chat request as a v3 model-api body: text turns of user and assistant
    (system text is a user turn: v3 has no system role)."""
    check_n(payload)
    if payload.get("tools") or payload.get("functions"):
        raise unsupported("tools are not supported by Zhipu's chatglm models", "unsupported_tools")
    prompt = []
    for message in payload.get("messages") or ():
        if not isinstance(message, dict):
            continue
        role = "assistant" if message.get("role") == "assistant" else "user"
        prompt.append({"role": role, "content": text_of(message.get("content"))})
    body: dict[str, Any] = {"prompt": prompt, **sampling(payload, greedy_switch=False)}
    if stream:
        body["incremental"] = True
    return body


def embedding_input(payload: dict[str, Any], model: str) -> str | list[str]:
    value = payload.get("input")
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        if model == "embedding-2":
            raise unsupported("embedding-2 embeds one text per request", "unsupported_input")
        return list(value)
    raise unsupported(
        "channel type Zhipu embeds strings only, not token arrays", "unsupported_input"
    )


def convert_embedding_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "input": embedding_input(payload, model)}
    dimensions = payload.get("dimensions")
    if isinstance(dimensions, int) and dimensions > 0:
        body["dimensions"] = dimensions
    return body


def convert_image_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    if payload.get("response_format") == "b64_json":
        raise unsupported("CogView answers with image URLs only", "unsupported_parameter")
    body: dict[str, Any] = {"model": model, "prompt": payload.get("prompt")}
    for name in ("size", "quality"):
        if isinstance(payload.get(name), str):
            body[name] = payload[name]
    user = payload.get("user")
    if isinstance(user, str) and len(user) in USER_ID_LENGTH:
        body["user_id"] = user
    return body


def request_root(attempt: Attempt) -> str:
    return API_SUFFIX.sub("", base_url(attempt))


def request_headers(attempt: Attempt) -> dict[str, str]:
    return {
        "Authorization": auth_token(attempt.channel.key),
        "Content-Type": "application/json",
        "Accept": "text/event-stream" if attempt.stream else "application/json",
    }


# ---------------------------------------------------------------------- response


def finish_reason(reason: Any) -> Any:
    return FINISH_REASONS.get(reason, reason) if isinstance(reason, str) else reason


def convert_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A v4 answer is OpenAI's but for `object` and the finish reasons."""
    result = {
        **data,
        "object": "chat.completion",
        "created": data.get("created") or int(time.time()),
        "model": data.get("model") or model,
    }
    choices = []
    for choice in data.get("choices") or ():
        if isinstance(choice, dict):
            choice = {**choice, "finish_reason": finish_reason(choice.get("finish_reason"))}
        choices.append(choice)
    result["choices"] = choices
    return result


def v3_status(code: Any) -> int:
    """The HTTP status One API's clients expect for a v3 error code (Zhipu's code table:
    1000s authentication, 1100s account, 1200s call errors, 1300s policy and limits)."""
    if not isinstance(code, int):
        return 500
    if 1000 <= code < 1100:
        return 401
    if code in (1113, 1302, 1303, 1304, 1305):
        return 429  # arrears and rate limits, as v4 reports them
    if 1100 <= code < 1200 or code == 1220:
        return 403
    if 1230 <= code < 1260:
        return 500
    if 1200 <= code < 1400:
        return 400
    return 500


def v3_failure(data: dict[str, Any]) -> UpstreamFailure:
    code = data.get("code")
    status = v3_status(code)
    message = str(data.get("msg") or f"Zhipu error {code}")
    return UpstreamFailure(
        RelayError(status, message, type="zhipu_error", code=code),
        retryable=is_retryable_status(status),
    )


def unquote(content: Any) -> str:
    """v3 answers are JSON string literals inside the string (`"\\"Hi\\\\n\\""`)."""
    text = str(content or "")
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text[1:-1]
        return decoded if isinstance(decoded, str) else text[1:-1]
    return text


def v3_usage(usage: Any) -> dict[str, int] | None:
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    total = usage.get("total_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total if isinstance(total, int) else prompt + completion,
    }


def convert_v3_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    if data.get("success") is not True:
        raise v3_failure(data)
    inner = data.get("data") if isinstance(data.get("data"), dict) else {}
    choices = []
    raw_choices = [c for c in inner.get("choices") or () if isinstance(c, dict)]
    for index, choice in enumerate(raw_choices):
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": unquote(choice.get("content"))},
                "logprobs": None,
                "finish_reason": "stop",
            }
        )
    result: dict[str, Any] = {
        "id": str(inner.get("task_id") or inner.get("request_id") or f"chatcmpl-{time.time_ns()}"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    usage = v3_usage(inner.get("usage"))
    if usage is not None:
        result["usage"] = usage
    return result


def convert_embedding_response(
    data: dict[str, Any], model: str, encoding_format: Any = None
) -> dict[str, Any]:
    return openai_embedding_list(data, model, encoding_format)


# ---------------------------------------------------------------------- streams


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def collect_text(delta: Any, into: list[str]) -> None:
    if not isinstance(delta, dict):
        return
    for name in ("content", "reasoning_content"):
        if isinstance(delta.get(name), str):
            into.append(delta[name])
    for call in delta.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            into += [str(function.get("name") or ""), str(function.get("arguments") or "")]


@dataclass
class ZhipuStream:
    """v4 chunks are OpenAI's; this fixes `object` and finish reasons and keeps the usage
    Zhipu puts on its last chunk for billing (sent to the client only when asked, as a
    usage-only chunk before `[DONE]`)."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:") or self.saw_done:
            return None
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return self._done()
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(event, dict):
            return None
        if isinstance(event.get("error"), dict):
            error = event["error"]
            self.upstream_error = {
                "message": str(error.get("message") or "upstream stream error"),
                "type": UPSTREAM_ERROR,
                "param": None,
                "code": error.get("code"),
            }
            return sse({"error": self.upstream_error})
        usage = event.pop("usage", None)
        if isinstance(usage, dict) and usage:
            self.usage = usage
        self.id = str(event.get("id") or self.id)
        self.created = event.get("created") or self.created
        choices = [c for c in event.get("choices") or () if isinstance(c, dict)]
        if not choices:
            return None
        for choice in choices:
            collect_text(choice.get("delta"), self.generated)
            if "finish_reason" in choice:
                choice["finish_reason"] = finish_reason(choice["finish_reason"])
        event.update(
            object="chat.completion.chunk",
            model=event.get("model") or self.model,
            choices=choices,
        )
        return sse(event)

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _done(self) -> bytes:
        self.saw_done = True
        frames = b""
        if self.usage is not None and self.client_wants_usage:
            frames += sse(
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": self.usage,
                }
            )
        return frames + DONE_FRAME


@dataclass
class ZhipuV3Stream:
    """v3 `sse-invoke` events: `add` carries text (several `data:` lines are one text joined
    by newlines), `finish` ends with a `meta:` JSON line holding the usage, `error` and
    `interrupted` (a content-policy stop) end early."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"chatcmpl-{time.time_ns()}")
    created: int = field(default_factory=lambda: int(time.time()))
    event: str = ""  # the name of the event being read
    data_lines: int = 0  # `data:` lines of that event so far
    started: bool = False

    def accept(self, line: bytes) -> bytes | None:
        if self.saw_done or self.upstream_error is not None:
            return None
        if not line:
            return self._end_of_event()
        name, _, raw = line.decode("utf-8", "replace").partition(":")
        value = raw[1:] if raw.startswith(" ") else raw
        if name == "event":
            self.event = value.strip()
        elif name == "id" and value.strip() and not self.started:
            self.id = value.strip()  # one id for the whole stream: the first one
        elif name == "data":
            return self._data(value)
        elif name == "meta":
            return self._meta(value)
        return None

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _data(self, value: str) -> bytes | None:
        if self.event == "interrupted":
            return None  # its text is Zhipu's notice, not the model's; the end says why
        if self.event == "error":
            self.upstream_error = {
                "message": value or "upstream stream error",
                "type": "zhipu_error",
                "param": None,
                "code": None,
            }
            return sse({"error": self.upstream_error})
        text = ("\n" if self.data_lines else "") + value
        self.data_lines += 1
        if not text:
            return None
        self.generated.append(text)
        return self._chunk({"content": text})

    def _meta(self, value: str) -> bytes:
        try:
            meta = orjson.loads(value)
        except orjson.JSONDecodeError:
            meta = {}
        if isinstance(meta, dict):
            self.usage = v3_usage(meta.get("usage"))
        return self._finish("stop")

    def _end_of_event(self) -> bytes | None:
        event, self.event, self.data_lines = self.event, "", 0
        if event == "finish":
            return self._finish("stop")  # a finish without its meta line
        if event == "interrupted":
            return self._finish("content_filter")
        return None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self.started:
            self.started = True
            delta = {"role": "assistant", **delta}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(self._envelope([choice]))

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _finish(self, reason: str) -> bytes:
        self.saw_done = True
        frames = self._chunk({}, reason)
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        return frames + DONE_FRAME


# ---------------------------------------------------------------------- adaptor


def client_payload(attempt: Attempt) -> dict[str, Any]:
    try:
        payload = orjson.loads(attempt.request.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


class ZhipuAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        root = request_root(attempt)
        mode, model = attempt.mode, attempt.model
        if mode is RelayMode.CHAT and is_v3(model):
            payload = convert_v3_request(body.payload, attempt.stream)
            method = "sse-invoke" if attempt.stream else "invoke"
            url = f"{root}/api/paas/v3/model-api/{model}/{method}"
        elif mode is RelayMode.CHAT:
            payload = convert_chat_request(body.payload, model, attempt.stream)
            url = f"{root}/api/paas/v4/chat/completions"
        elif mode is RelayMode.EMBEDDINGS:
            payload = convert_embedding_request(body.payload, model)
            url = f"{root}/api/paas/v4/embeddings"
        elif mode is RelayMode.IMAGES_GENERATIONS:
            payload = convert_image_request(body.payload, model)
            url = f"{root}/api/paas/v4/images/generations"
        else:
            raise unsupported(f"{mode.upstream_path} is not supported by channel type Zhipu")
        return UpstreamRequest("POST", url, request_headers(attempt), orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Zhipu")

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
        if attempt.mode is not RelayMode.CHAT:
            return body
        if is_v3(attempt.model):
            return orjson.dumps(convert_v3_response(data, attempt.model))
        return orjson.dumps(convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        if is_v3(attempt.model):
            return ZhipuV3Stream(client_wants_usage=client_wants_usage, model=attempt.model)
        return ZhipuStream(client_wants_usage=client_wants_usage, model=attempt.model)
