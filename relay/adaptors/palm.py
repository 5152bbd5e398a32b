"""Google's PaLM 2 chat API (`v1beta2 ... :generateMessage`), converted to and from OpenAI.

PaLM takes a prompt of `messages` between two authors plus an optional `context` (the system
prompt), and answers with `candidates`; it counts no tokens and cannot stream. A stream
request is sent as a plain one and its answer replayed as chunks: the whole answer in one
delta, then the finish reason, then `[DONE]` (One API does the same).
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.openai import base_url
from relay.errors import RelayError
from relay.modes import RelayMode
from relay.streaming import completion_frames

VERSION = "v1beta2"
# The only model generateMessage ever served; One API's catalog calls it "PaLM-2".
DEFAULT_MODEL = "chat-bison-001"
USER_AUTHOR = "0"
MODEL_AUTHOR = "1"
SYSTEM_ROLES = frozenset({"system", "developer"})
MAX_CANDIDATES = 8
VERSION_SUFFIX = re.compile(r"/v\d+(?:alpha|beta)?\d*$")


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def unsupported_content(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_content")


def clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


# ---------------------------------------------------------------------- request


def text_of(content: Any) -> str:
    """Message content as plain text; PaLM reads text only."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text") or ""))
        elif isinstance(part, dict):
            raise unsupported_content(
                f"content part type {part.get('type')!r} is not supported by channel type PaLM"
            )
    return "".join(texts)


def upstream_model(model: str) -> str:
    return model if model.startswith("chat-bison") else DEFAULT_MODEL


def prompt_messages(messages: list[Any]) -> list[dict[str, str]]:
    """User turns are author 0, assistant turns author 1; consecutive turns of one author
    are joined (PaLM wants the authors to alternate) and empty ones dropped."""
    merged: list[dict[str, str]] = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") in SYSTEM_ROLES:
            continue
        role = message.get("role")
        if role in ("tool", "function") or message.get("tool_calls"):
            raise unsupported("tool calls are not supported by channel type PaLM")
        content = text_of(message.get("content"))
        if not content:
            continue
        author = MODEL_AUTHOR if role == "assistant" else USER_AUTHOR
        if merged and merged[-1]["author"] == author:
            merged[-1]["content"] += "\n" + content
        else:
            merged.append({"author": author, "content": content})
    return merged


def convert_request(payload: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request as a PaLM GenerateMessageRequest."""
    if payload.get("tools") or payload.get("functions"):
        raise unsupported("tools are not supported by channel type PaLM")
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    prompt: dict[str, Any] = {"messages": prompt_messages(messages)}
    context = "\n".join(
        text
        for message in messages
        if isinstance(message, dict) and message.get("role") in SYSTEM_ROLES
        for text in [text_of(message.get("content"))]
        if text
    )
    if context:
        prompt["context"] = context
    request: dict[str, Any] = {"prompt": prompt}
    temperature = payload.get("temperature")
    if isinstance(temperature, int | float):
        request["temperature"] = clamp(temperature, 0.0, 1.0)
    top_p = payload.get("top_p")
    if isinstance(top_p, int | float):
        request["topP"] = clamp(top_p, 0.0, 1.0)
    top_k = payload.get("top_k")
    if isinstance(top_k, int) and top_k > 0:
        request["topK"] = top_k
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        request["candidateCount"] = min(n, MAX_CANDIDATES)
    return request


# ---------------------------------------------------------------------- response


def convert_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A PaLM GenerateMessageResponse as an OpenAI chat.completion. A prompt or answer its
    filters blocked has no candidates: one empty, content-filtered choice."""
    choices = []
    for index, candidate in enumerate(data.get("candidates") or ()):
        content = candidate.get("content") if isinstance(candidate, dict) else None
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": str(content or "")},
                "logprobs": None,
                "finish_reason": "stop",
            }
        )
    if not choices:
        blocked = bool(data.get("filters"))
        choices.append(
            {
                "index": 0,
                "message": {"role": "assistant", "content": ""},
                "logprobs": None,
                "finish_reason": "content_filter" if blocked else "stop",
            }
        )
    return {
        "id": f"chatcmpl-{secrets.token_hex(12)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def json_to_stream_frames(
    response_json: dict[str, Any], client_wants_usage: bool, model: str = "PaLM-2"
) -> bytes:
    """PaLM's whole answer as the frames of a stream: each candidate in one delta, its
    finish reason, the usage chunk when asked and known (PaLM counts nothing), `[DONE]`."""
    return completion_frames(convert_response(response_json, model), client_wants_usage)


@dataclass
class PalmStream:
    """For an answer that arrives without a JSON content type (so the relay reads it as a
    stream): the lines of the one JSON body are collected until they parse, then replayed
    as chunks."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    lines: list[bytes] = field(default_factory=list)
    generated: list[str] = field(default_factory=list)

    def accept(self, line: bytes) -> bytes | None:
        if self.saw_done:
            return None
        self.lines.append(line)
        try:
            data = orjson.loads(b"\n".join(self.lines))
        except orjson.JSONDecodeError:
            return None  # the body is not complete yet
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("error"), dict):
            error = data["error"]
            self.upstream_error = {
                "message": str(error.get("message") or "upstream error"),
                "type": "upstream_error",
                "param": None,
                "code": error.get("status") or error.get("code"),
            }
            return b"data: " + orjson.dumps({"error": self.upstream_error}) + b"\n\n"
        completion = convert_response(data, self.model)
        for choice in completion["choices"]:
            self.generated.append(choice["message"]["content"])
        self.saw_done = True
        return completion_frames(completion, self.client_wants_usage)

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)


# ---------------------------------------------------------------------- adaptor


def request_url(attempt: Attempt) -> str:
    root = VERSION_SUFFIX.sub("", base_url(attempt))
    return f"{root}/{VERSION}/models/{upstream_model(attempt.model)}:generateMessage"


class PaLMAdaptor(Adaptor):
    # PaLM cannot stream: a stream request is sent as a plain one, and the relay replays
    # its JSON answer as chunks (`relay.text` does so for any JSON answer to a stream).
    fake_stream = True

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is not RelayMode.CHAT:
            raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type PaLM")
        headers = {
            "x-goog-api-key": attempt.channel.key,
            "content-type": "application/json",
            "accept": "application/json",
        }
        payload = convert_request(body.payload)
        return UpstreamRequest("POST", request_url(attempt), headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type PaLM")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        return orjson.dumps(convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return PalmStream(client_wants_usage=client_wants_usage, model=attempt.model)
