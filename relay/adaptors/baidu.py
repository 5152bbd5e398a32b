"""Baidu ERNIE (文心千帆, the v1 `wenxinworkshop` API): chat and embeddings.

The channel key is `API key|secret key`. They buy an OAuth access token
(`POST {base}/oauth/2.0/token?grant_type=client_credentials&client_id=&client_secret=`,
valid `expires_in` seconds, 30 days in practice), which every call carries as
`?access_token=`. Tokens are cached per key and base URL and renewed in the background
once less than an hour is left (One API's rule); only a cold cache makes a request wait,
and then twenty concurrent requests share one exchange.

Chat goes to `{base}/rpc/2.0/ai_custom/v1/wenxinworkshop/chat/{endpoint}`, the endpoint
named by a per-model table; the system prompt travels apart, functions are ERNIE's own,
and answers carry `result`. Failures come back as HTTP 200 with `{error_code, error_msg}`
and are turned into OpenAI errors here: 110/111 (a bad or expired access token) also drop
the cached token, 4/17/18/19 and 3365xx (limits) become 429.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from django.conf import settings

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import openai_embedding_list
from relay.adaptors.openai import base_url
from relay.adaptors.token_cache import TokenCache
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME
from relay.upstream import is_retryable_status

API_PREFIX = "/rpc/2.0/ai_custom/v1/wenxinworkshop"
TOKEN_PATH = "/oauth/2.0/token"
TOKEN_REFRESH_MARGIN_SECONDS = 3600
TOKEN_TIMEOUT = httpx.Timeout(10.0)
# Baidu does not always say how long a token lives; its documented lifetime is 30 days.
DEFAULT_TOKEN_TTL_SECONDS = 30 * 24 * 3600

# Model name -> chat endpoint (One API's table, plus the models whose endpoint is not
# simply the lower-cased name). Any other model's endpoint is its lower-cased name.
CHAT_ENDPOINTS = {
    "ERNIE-4.0": "completions_pro",
    "ERNIE-Bot-4": "completions_pro",
    "ERNIE-Bot": "completions",
    "ERNIE-Bot-turbo": "eb-instant",
    "ERNIE-Speed": "ernie_speed",
    "ERNIE-4.0-8K": "completions_pro",
    "ERNIE-3.5-8K": "completions",
    "ERNIE-3.5-8K-0205": "ernie-3.5-8k-0205",
    "ERNIE-3.5-8K-1222": "ernie-3.5-8k-1222",
    "ERNIE-Bot-8K": "ernie_bot_8k",
    "ERNIE-3.5-4K-0205": "ernie-3.5-4k-0205",
    "ERNIE-Speed-8K": "ernie_speed",
    "ERNIE-Speed-128K": "ernie-speed-128k",
    "ERNIE-Lite-8K": "ernie-lite-8k",
    "ERNIE-Lite-8K-0922": "eb-instant",
    "ERNIE-Lite-8K-0308": "ernie-lite-8k",
    "ERNIE-Tiny-8K": "ernie-tiny-8k",
    "ERNIE-Character-8K": "ernie-char-8k",
    "ERNIE-Character-Fiction-8K": "ernie-char-fiction-8k",
    "ERNIE-Functions-8K": "ernie-func-8k",
    "BLOOMZ-7B": "bloomz_7b1",
}
EMBEDDING_ENDPOINTS = {
    "Embedding-V1": "embedding-v1",
    "bge-large-zh": "bge_large_zh",
    "bge-large-en": "bge_large_en",
    "tao-8k": "tao_8k",
}
# ERNIE's ranges: temperature in (0, 1], top_p in [0, 1], penalty_score in [1, 2].
MIN_TEMPERATURE, MAX_TEMPERATURE = 0.01, 1.0
MIN_PENALTY, MAX_PENALTY = 1.0, 2.0
MIN_OUTPUT_TOKENS = 2
MAX_STOP_WORDS = 4
FINISH_REASONS = {
    "normal": "stop",
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
}
SYSTEM_ROLES = frozenset({"system", "developer"})
# ERNIE's own switches, passed on when an ERNIE-aware client sends them.
BAIDU_FIELDS = ("disable_search", "enable_citation", "enable_trace", "penalty_score")
# error_code -> HTTP status. 110/111 are our cached token going stale, not a dead account:
# 500 keeps the channel from being disabled while the next request fetches a new token.
TOKEN_ERRORS = frozenset({110, 111})
ERROR_STATUS = {
    1: 500,
    2: 503,
    3: 404,
    4: 429,
    6: 403,
    13: 401,
    14: 401,
    15: 403,
    17: 429,
    18: 429,
    19: 429,
    100: 400,
    110: 500,
    111: 500,
    336000: 500,
    336100: 503,
    336501: 429,
    336502: 429,
}

_tokens = TokenCache(TOKEN_REFRESH_MARGIN_SECONDS, background_refresh=True)


def unsupported(message: str, code: str = "unsupported_mode") -> RelayError:
    return RelayError(400, message, code=code)


# ---------------------------------------------------------------------- access token


def split_key(key: str) -> tuple[str, str]:
    parts = key.strip().split("|")
    if len(parts) != 2 or not all(parts):
        raise UpstreamFailure(
            RelayError(
                401,
                "invalid Baidu channel key: expected `API key|secret key`",
                code="invalid_channel_key",
            ),
            retryable=True,
        )
    return parts[0], parts[1]


def token_failure(status: int, data: Any) -> UpstreamFailure:
    data = data if isinstance(data, dict) else {}
    error = str(data.get("error") or "")
    description = str(data.get("error_description") or "")
    # A wrong key pair: 401, so that a channel with dead credentials gets disabled.
    http_status = 401 if error in ("invalid_client", "unauthorized_client") else status
    if http_status < 400:
        http_status = 500
    message = ": ".join(part for part in (error, description) if part)
    return UpstreamFailure(
        RelayError(
            http_status,
            f"Baidu access token request failed: {message or f'status {status}'}",
            type="baidu_error",
            code=error or "access_token_failed",
        ),
        retryable=True,
    )


def fetch_access_token(root: str, key: str) -> tuple[str, float]:
    """One client-credentials exchange: (access_token, seconds valid). Blocking: it runs
    once per key a month, in the caller or a refresh thread."""
    client_id, client_secret = split_key(key)
    params = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }
    try:
        with httpx.Client(
            timeout=TOKEN_TIMEOUT, proxy=settings.RELAY_PROXY or None, trust_env=False
        ) as client:
            response = client.post(
                root + TOKEN_PATH, params=params, headers={"Accept": "application/json"}
            )
    except httpx.HTTPError as error:
        # The URL carries the secret: only the kind of failure goes into the message.
        raise UpstreamFailure(
            RelayError(
                500,
                f"Baidu access token request failed: {type(error).__name__}",
                code="access_token_failed",
            ),
            retryable=True,
        ) from None
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("error") or not data.get("access_token"):
        raise token_failure(response.status_code, data)
    expires_in = data.get("expires_in")
    ttl = expires_in if isinstance(expires_in, int) and expires_in > 0 else None
    return str(data["access_token"]), float(ttl or DEFAULT_TOKEN_TTL_SECONDS)


def token_key(attempt: Attempt) -> str:
    # Tokens are minted by the host they are used on: the base URL is part of the key.
    return f"{base_url(attempt)}\n{attempt.channel.key}"


def access_token(attempt: Attempt) -> str:
    root = base_url(attempt)
    key = attempt.channel.key
    return _tokens.get(token_key(attempt), lambda: fetch_access_token(root, key))


def drop_access_token(attempt: Attempt) -> None:
    _tokens.invalidate(token_key(attempt))


def reset_tokens() -> None:
    _tokens.clear()


# ---------------------------------------------------------------------- request


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def text_of(content: Any) -> str:
    """ERNIE v1 reads text only: an image or audio part is a client error, not dropped."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    texts = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text") or ""))
        elif isinstance(part, dict):
            raise unsupported(
                f"content part type {part.get('type')!r} is not supported by channel type Baidu",
                "unsupported_content",
            )
    return "\n".join(texts)


def function_call_of(message: dict[str, Any]) -> dict[str, Any] | None:
    """The one function call an assistant turn may carry in ERNIE's history."""
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    if len(calls) > 1:
        raise unsupported(
            "channel type Baidu takes one tool call per assistant message", "unsupported_tools"
        )
    function = calls[0].get("function") if calls else message.get("function_call")
    if not isinstance(function, dict):
        return None
    return {
        "name": str(function.get("name") or ""),
        "arguments": str(function.get("arguments") or "{}"),
    }


def convert_messages(messages: list[Any]) -> tuple[list[dict[str, Any]], str]:
    """(ERNIE messages, system prompt). Tool results become `function` turns named after
    the call they answer; consecutive user turns are merged (ERNIE wants alternation)."""
    system: list[str] = []
    call_names: dict[str, str] = {}
    converted: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        content = text_of(message.get("content"))
        if role in SYSTEM_ROLES:
            system.append(content)
        elif role == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": content}
            call = function_call_of(message)
            if call is not None:
                turn["function_call"] = call
                for tool_call in message.get("tool_calls") or ():
                    if isinstance(tool_call, dict) and tool_call.get("id"):
                        call_names[str(tool_call["id"])] = call["name"]
            converted.append(turn)
        elif role in ("tool", "function"):
            name = message.get("name") or call_names.get(str(message.get("tool_call_id")), "")
            converted.append({"role": "function", "name": str(name), "content": content})
        elif converted and converted[-1]["role"] == "user":
            converted[-1]["content"] += "\n" + content
        else:
            converted.append({"role": "user", "content": content})
    return converted, "\n".join(part for part in system if part)


def convert_functions(payload: dict[str, Any]) -> list[dict[str, Any]]:
    functions: list[dict[str, Any]] = []
    for tool in payload.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name"):
            functions.append(function)
    for function in payload.get("functions") or ():
        if isinstance(function, dict) and function.get("name"):
            functions.append(function)
    converted = []
    for function in functions:
        entry: dict[str, Any] = {
            "name": function["name"],
            "description": str(function.get("description") or ""),
            "parameters": function.get("parameters") or {"type": "object", "properties": {}},
        }
        converted.append(entry)
    return converted


def forced_function(choice: Any) -> dict[str, Any] | None:
    if isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else choice.get("name")
        if name:
            return {"type": "function", "function": {"name": name}}
    return None


def penalty_score(payload: dict[str, Any]) -> float | None:
    """ERNIE's repetition penalty is [1, 2]; OpenAI's frequency_penalty [-2, 2] maps onto
    it from 1 (no penalty) upwards."""
    own = number(payload.get("penalty_score"))
    if own is None:
        frequency = number(payload.get("frequency_penalty"))
        if frequency is None:
            return None
        own = 1.0 + frequency / 2
    return min(max(own, MIN_PENALTY), MAX_PENALTY)


def stop_words(stop: Any) -> list[str] | None:
    if isinstance(stop, str) and stop:
        return [stop]
    if isinstance(stop, list):
        words = [word for word in stop if isinstance(word, str) and word]
        return words[:MAX_STOP_WORDS] or None
    return None


def convert_chat_request(payload: dict[str, Any], stream: bool) -> dict[str, Any]:
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise unsupported("n > 1 is not supported by channel type Baidu", "unsupported_parameter")
    raw_messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    messages, system = convert_messages(raw_messages)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    if stream:
        body["stream"] = True
    temperature = number(payload.get("temperature"))
    if temperature is not None:
        body["temperature"] = min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)
    top_p = number(payload.get("top_p"))
    if top_p is not None:
        body["top_p"] = min(max(top_p, 0.0), 1.0)
    penalty = penalty_score(payload)
    if penalty is not None:
        body["penalty_score"] = penalty
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and max_tokens > 0:
        body["max_output_tokens"] = max(max_tokens, MIN_OUTPUT_TOKENS)
    stop = stop_words(payload.get("stop"))
    if stop:
        body["stop"] = stop
    user = payload.get("user")
    if isinstance(user, str) and user:
        body["user_id"] = user
    functions = convert_functions(payload)
    if functions and payload.get("tool_choice") != "none":
        body["functions"] = functions
        forced = forced_function(payload.get("tool_choice") or payload.get("function_call"))
        if forced is not None:
            body["tool_choice"] = forced
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        body["response_format"] = "json_object"
    for name in BAIDU_FIELDS:
        if isinstance(payload.get(name), bool) and name not in body:
            body[name] = payload[name]
    return body


def convert_embedding_request(payload: dict[str, Any]) -> dict[str, Any]:
    value = payload.get("input")
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        texts = list(value)
    else:
        raise unsupported(
            "channel type Baidu embeds strings only, not token arrays", "unsupported_input"
        )
    body: dict[str, Any] = {"input": texts}
    user = payload.get("user")
    if isinstance(user, str) and user:
        body["user_id"] = user
    return body


def endpoint_url(attempt: Attempt) -> str:
    model = attempt.model
    if attempt.mode is RelayMode.EMBEDDINGS:
        path = "embeddings/" + EMBEDDING_ENDPOINTS.get(model, model.lower())
    else:
        path = "chat/" + CHAT_ENDPOINTS.get(model, model.lower())
    return f"{base_url(attempt)}{API_PREFIX}/{path}"


# ---------------------------------------------------------------------- response


def error_status(code: Any) -> int:
    if not isinstance(code, int):
        return 500
    if code in ERROR_STATUS:
        return ERROR_STATUS[code]
    if 336000 <= code < 337000:
        return 400  # ERNIE's 336xxx codes not listed above are invalid requests
    return 500


def error_of(data: dict[str, Any]) -> tuple[Any, str] | None:
    """(error_code, error_msg) when the body is one of Baidu's errors."""
    code = data.get("error_code")
    message = data.get("error_msg")
    if (code is None or code == 0) and not message:
        return None
    return code, str(message or f"Baidu error {code}")


def failure(code: Any, message: str) -> UpstreamFailure:
    status = error_status(code)
    return UpstreamFailure(
        RelayError(status, message, type="baidu_error", code=code),
        retryable=is_retryable_status(status),
    )


def openai_usage(usage: Any) -> dict[str, int] | None:
    """ERNIE's counts; completion is what the total adds to the prompt (One API's reading,
    as streamed chunks do not always fill completion_tokens)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    total = usage.get("total_tokens")
    if not isinstance(prompt, int) or not isinstance(total, int) or total <= 0:
        return None
    return {"prompt_tokens": prompt, "completion_tokens": total - prompt, "total_tokens": total}


def finish_reason(data: dict[str, Any], legacy_functions: bool) -> str:
    reason = data.get("finish_reason")
    if isinstance(data.get("function_call"), dict):
        return "function_call" if legacy_functions else "tool_calls"
    if reason in FINISH_REASONS:
        return FINISH_REASONS[reason]
    return "length" if data.get("is_truncated") is True else "stop"


def tool_call(function_call: dict[str, Any], response_id: Any) -> dict[str, Any]:
    suffix = str(response_id or "") or secrets.token_hex(12)
    return {
        "id": f"call_{suffix}",
        "type": "function",
        "function": {
            "name": str(function_call.get("name") or ""),
            "arguments": str(function_call.get("arguments") or "{}"),
        },
    }


def convert_response(data: dict[str, Any], model: str, legacy_functions: bool) -> dict[str, Any]:
    text = str(data.get("result") or "")
    message: dict[str, Any] = {"role": "assistant", "content": text}
    function_call = data.get("function_call")
    if isinstance(function_call, dict):
        message["content"] = text or None
        call = tool_call(function_call, data.get("id"))
        if legacy_functions:
            message["function_call"] = call["function"]
        else:
            message["tool_calls"] = [call]
    result: dict[str, Any] = {
        "id": str(data.get("id") or f"chatcmpl-{time.time_ns()}"),
        "object": "chat.completion",
        "created": data.get("created") or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(data, legacy_functions),
            }
        ],
    }
    usage = openai_usage(data.get("usage"))
    if usage is not None:
        result["usage"] = usage
    return result


def convert_embedding_response(
    data: dict[str, Any], model: str, encoding_format: Any = None
) -> dict[str, Any]:
    return openai_embedding_list(data, model, encoding_format)


# ---------------------------------------------------------------------- stream


def sse(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


@dataclass
class BaiduStream:
    """ERNIE's SSE: every `data:` line is a ChatResponse with the next piece of `result`;
    the one with `is_end` closes the answer and carries the final usage."""

    attempt: Attempt
    client_wants_usage: bool
    legacy_functions: bool = False
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"chatcmpl-{time.time_ns()}")
    created: int = field(default_factory=lambda: int(time.time()))
    started: bool = False

    def accept(self, line: bytes) -> bytes | None:
        if self.saw_done or self.upstream_error is not None:
            return None
        payload = line[5:] if line.startswith(b"data:") else line
        if not payload.strip().startswith(b"{"):
            return None
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        error = error_of(data)
        if error is not None:
            return self._error(*error)
        if data.get("id") and not self.started:
            self.id = str(data["id"])
        self.created = data.get("created") or self.created
        frames = self._content(data)
        if data.get("is_end") is True:
            # Only the last chunk's usage is the whole count: a stream cut short is billed
            # from the text it delivered instead.
            self.usage = openai_usage(data.get("usage"))
            frames += self._finish(finish_reason(data, self.legacy_functions))
        return frames or None

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _content(self, data: dict[str, Any]) -> bytes:
        delta: dict[str, Any] = {}
        text = data.get("result")
        if isinstance(text, str) and text:
            delta["content"] = text
            self.generated.append(text)
        function_call = data.get("function_call")
        if isinstance(function_call, dict):
            call = tool_call(function_call, data.get("id"))
            self.generated += [call["function"]["name"], call["function"]["arguments"]]
            if self.legacy_functions:
                delta["function_call"] = call["function"]
            else:
                delta["tool_calls"] = [{"index": 0, **call}]
        return self._chunk(delta) if delta else b""

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
            "model": self.attempt.model,
            "choices": choices,
        }

    def _finish(self, reason: str) -> bytes:
        self.saw_done = True
        frames = self._chunk({}, reason)
        if self.usage is not None and self.client_wants_usage:
            frames += sse({**self._envelope([]), "usage": self.usage})
        return frames + DONE_FRAME

    def _error(self, code: Any, message: str) -> bytes:
        if code in TOKEN_ERRORS:
            drop_access_token(self.attempt)
        self.upstream_error = {
            "message": message,
            "type": "baidu_error",
            "param": None,
            "code": code,
        }
        return sse({"error": self.upstream_error})


# ---------------------------------------------------------------------- adaptor


def client_payload(attempt: Attempt) -> dict[str, Any]:
    try:
        payload = orjson.loads(attempt.request.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def uses_legacy_functions(attempt: Attempt) -> bool:
    """Clients that sent `functions` (not `tools`) get `function_call` back."""
    payload = client_payload(attempt)
    return bool(payload.get("functions")) and not payload.get("tools")


class BaiduAdaptor(Adaptor):
    async def prepare(self, attempt: Attempt) -> None:
        # The first exchange for a key (and the one after a revoked token) is blocking
        # HTTP: do it in a worker thread so the event loop never waits on it.
        if attempt.mode in (RelayMode.CHAT, RelayMode.EMBEDDINGS):  # others are refused
            await asyncio.to_thread(access_token, attempt)

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is RelayMode.CHAT:
            payload = convert_chat_request(body.payload, attempt.stream)
        elif attempt.mode is RelayMode.EMBEDDINGS:
            payload = convert_embedding_request(body.payload)
        else:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Baidu"
            )
        url = f"{endpoint_url(attempt)}?access_token={access_token(attempt)}"
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if attempt.stream else "application/json",
        }
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Baidu")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        error = error_of(data)
        if error is not None:
            if error[0] in TOKEN_ERRORS:
                drop_access_token(attempt)
            raise failure(*error)
        if attempt.mode is RelayMode.EMBEDDINGS:
            encoding = client_payload(attempt).get("encoding_format")
            return orjson.dumps(convert_embedding_response(data, attempt.model, encoding))
        return orjson.dumps(convert_response(data, attempt.model, uses_legacy_functions(attempt)))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return BaiduStream(
            attempt=attempt,
            client_wants_usage=client_wants_usage,
            legacy_functions=uses_legacy_functions(attempt),
        )
