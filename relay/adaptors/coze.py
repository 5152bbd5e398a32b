"""Coze bots (open_api v2 chat), converted to and from OpenAI's chat completions.

The model name picks the bot: `bot-<bot id>` (One API's convention, the prefix is dropped).
A bot has its own prompt, model and sampling settings, so only the conversation goes
upstream: the last message is the `query`, the ones before it the `chat_history`. Coze
reports failures inside a 200 answer (`code` != 0), and streams `event: message` /
`done` / `error` events; neither carries token counts, so the relay counts the text.

The helpers of the "text-only upstreams" section are shared with the other adaptors that
take plain text turns (DeepL, AIProxy's library, Replicate's chat models).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import DONE, DONE_FRAME
from relay.upstream import is_retryable_status

BOT_PREFIX = "bot-"
CHAT_PATH = "/open_api/v2/chat"
# Coze requires a user id; channels without `config.user_id` and clients without `user`
# share this one (Coze keys conversations by it, the relay sends the history anyway).
DEFAULT_USER = "one-api"
# Coze v2 `code`s with an HTTP meaning (coze.com open API docs); others are server errors.
COZE_STATUS = {
    4000: 400,  # invalid request parameters
    4100: 401,  # authentication invalid
    4101: 403,  # the token lacks permission for this bot
    4200: 404,  # bot not found
    4015: 403,  # bot not published to the API channel
}
HISTORY_ROLES = {"user": "user", "assistant": "assistant"}

Json = dict[str, Any]


# ---------------------------------------------------------------------- text-only upstreams


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def content_text(content: Any, channel_name: str) -> str:
    """A message's text; image (and other non-text) parts are refused, not dropped, since
    the answer would silently ignore them."""
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
            continue
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            texts.append(str(part.get("text") or ""))
        else:
            raise RelayError(
                400,
                f"content part type {part.get('type')!r} is not supported by channel type "
                f"{channel_name}: it takes text only",
                code="unsupported_content",
            )
    return "\n".join(texts)


def refuse_unsupported(payload: Json, channel_name: str) -> None:
    """What a text-only upstream cannot honour: several choices, or a required tool call.
    Optional tools are ignored (the upstream just answers in text), as One API does."""
    n = payload.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise unsupported(f"n > 1 is not supported by channel type {channel_name}")
    choice = payload.get("tool_choice")
    forced = choice == "required" or isinstance(choice, dict)
    if forced and (payload.get("tools") or payload.get("functions")):
        raise unsupported(f"tool calls are not supported by channel type {channel_name}")


def chat_messages(payload: Json) -> list[Json]:
    messages = payload.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def completion_id(suffix: Any = None) -> str:
    return f"chatcmpl-{suffix}" if suffix else f"chatcmpl-{uuid.uuid4().hex}"


def chat_completion(text: str, model: str, id_: str, usage: Json | None = None) -> Json:
    completion: Json = {
        "id": id_,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        completion["usage"] = usage
    return completion


def sse(event: Json) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n\n"


def error_event(error: Json) -> bytes:
    return sse({"error": error})


def parse_json_object(body: bytes) -> Json | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


# ---------------------------------------------------------------------- request


def bot_id(model: str) -> str:
    return model.removeprefix(BOT_PREFIX)


def coze_user(attempt: Attempt, payload: Json) -> str:
    configured = attempt.channel.config.get("user_id")
    if isinstance(configured, str) and configured:
        return configured
    user = payload.get("user")
    return user if isinstance(user, str) and user else DEFAULT_USER


def history_entry(message: Json) -> Json:
    # Coze's history knows users and assistants; a system or tool turn is context the user
    # gave, so it goes as a user turn rather than being lost.
    role = HISTORY_ROLES.get(str(message.get("role")), "user")
    return {
        "role": role,
        "content": content_text(message.get("content"), "Coze"),
        "content_type": "text",
    }


def convert_request(payload: Json, model: str, user: str, stream: bool) -> Json:
    refuse_unsupported(payload, "Coze")
    messages = chat_messages(payload)
    if not messages:
        raise RelayError(400, "messages must not be empty", code="invalid_text_request")
    request: Json = {
        "bot_id": bot_id(model),
        "user": user,
        "query": content_text(messages[-1].get("content"), "Coze"),
        "stream": stream,
    }
    history = [history_entry(message) for message in messages[:-1]]
    if history:
        request["chat_history"] = history
    conversation = payload.get("conversation_id")
    if isinstance(conversation, str) and conversation:
        request["conversation_id"] = conversation  # a Coze-aware client continuing a chat
    return request


# ---------------------------------------------------------------------- response


def coze_error(data: Json) -> RelayError | None:
    code = data.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code == 0:
        return None
    message = str(data.get("msg") or f"Coze error {code}")
    return RelayError(COZE_STATUS.get(code, 500), message, type=UPSTREAM_ERROR, code=code)


def answer_text(messages: Any) -> str:
    """The bot's answers; follow-up suggestions, tool calls and verbose records are
    Coze's own bookkeeping, not part of the reply."""
    answers = [
        str(message.get("content") or "")
        for message in (messages if isinstance(messages, list) else ())
        if isinstance(message, dict) and message.get("type") == "answer"
    ]
    return "\n\n".join(answer for answer in answers if answer)


def convert_response(data: Json, model: str) -> Json:
    return chat_completion(
        answer_text(data.get("messages")), model, completion_id(data.get("conversation_id"))
    )


# ---------------------------------------------------------------------- stream


@dataclass
class CozeStream:
    """`event:`/`data:` pairs in, OpenAI chunks out; one instance per response."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))
    event: str = ""
    started: bool = False

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def accept(self, line: bytes) -> bytes | None:
        if line.startswith(b"event:"):
            self.event = line[6:].strip().decode("utf-8", "replace")
            return None
        if not line.startswith(b"data:"):
            return None
        raw = line[5:].strip()
        if raw == DONE:
            return self._done()
        data = parse_json_object(raw)
        if data is None:
            return None
        event = str(data.get("event") or self.event)
        self.event = ""
        if event == "message":
            return self._message(data)
        if event == "done":
            return self._done()
        if event == "error":
            return self._error(data)
        return None

    def _chunk(self, delta: Json, finish: str | None = None) -> bytes:
        if not self.id:
            self.id = completion_id()
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
            }
        )

    def _message(self, data: Json) -> bytes | None:
        message = data.get("message")
        if not isinstance(message, dict) or message.get("type") != "answer":
            return None
        if not self.id and data.get("conversation_id"):
            self.id = completion_id(data["conversation_id"])
        text = str(message.get("content") or "")
        if not text and self.started:
            return None
        delta: Json = {"content": text}
        if not self.started:
            delta = {"role": "assistant", "content": text}
            self.started = True
        self.generated.append(text)
        return self._chunk(delta)

    def _done(self) -> bytes:
        if self.saw_done:
            return b""
        self.saw_done = True
        return self._chunk({}, "stop") + DONE_FRAME

    def _error(self, data: Json) -> bytes:
        info = data.get("error_information")
        info = info if isinstance(info, dict) else {}
        code = info.get("code")
        self.upstream_error = {
            "message": str(info.get("msg") or "Coze stream error"),
            "type": UPSTREAM_ERROR,
            "param": None,
            "code": code,
        }
        return error_event(self.upstream_error)


# ---------------------------------------------------------------------- adaptor


class CozeAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is not RelayMode.CHAT:
            raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Coze")
        payload = convert_request(
            body.payload, attempt.model, coze_user(attempt, body.payload), attempt.stream
        )
        headers = {
            "Authorization": f"Bearer {attempt.channel.key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if attempt.stream else "application/json",
        }
        url = base_url(attempt) + CHAT_PATH
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type Coze")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        data = parse_json_object(body)
        if data is None:
            return body
        error = coze_error(data)
        if error is not None:
            raise UpstreamFailure(error, retryable=is_retryable_status(error.status))
        return orjson.dumps(convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return CozeStream(client_wants_usage=client_wants_usage, model=attempt.model)
