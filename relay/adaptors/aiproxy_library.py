"""AIProxy's knowledge-base Q&A (`/api/library/ask`) as a chat model.

The last message is the question, asked of the library named by the channel's
`config.library_id` with the requested model. Wire format as One API's `aiproxy` adaptor
sends it (and AIProxy's own samples): Bearer key, `{model, query, libraryId, stream}`; the
answer `{success, answer, documents: [{title, url}], errCode, message}` (failures arrive in a
200 answer with a non-zero `errCode`). Streams are `data:{"content", "finish", "model",
"documents"}` lines. Like One API, the documents the answer rests on are appended to it as
a numbered Markdown list under "参考文档：" (in the stream: one last chunk before the finish).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.coze import (
    chat_completion,
    chat_messages,
    completion_id,
    content_text,
    error_event,
    parse_json_object,
    refuse_unsupported,
    sse,
    unsupported,
)
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import DONE, DONE_FRAME

ASK_PATH = "/api/library/ask"
REFERENCES_HEADING = "\n\n参考文档：\n"

Json = dict[str, Any]


# ---------------------------------------------------------------------- request


def library_id(attempt: Attempt) -> str:
    value = attempt.channel.config.get("library_id")
    if isinstance(value, int | str) and not isinstance(value, bool) and str(value):
        return str(value)
    raise UpstreamFailure(
        RelayError(
            500,
            "the AIProxy library channel has no knowledge base (config library_id)",
            code="channel_config_missing",
        ),
        retryable=True,
        from_upstream=False,
    )


def convert_request(payload: Json, model: str, library: str, stream: bool) -> Json:
    refuse_unsupported(payload, "AIProxy Library")
    messages = chat_messages(payload)
    query = content_text(messages[-1].get("content"), "AIProxy Library") if messages else ""
    if not query.strip():
        raise RelayError(400, "the last message has no question", code="invalid_text_request")
    return {"model": model, "query": query, "libraryId": library, "stream": stream}


# ---------------------------------------------------------------------- response


def references(documents: Any) -> str:
    items = [d for d in documents if isinstance(d, dict)] if isinstance(documents, list) else []
    if not items:
        return ""
    lines = [f"{i}. [{d.get('title') or ''}]({d.get('url') or ''})" for i, d in enumerate(items, 1)]
    return REFERENCES_HEADING + "\n".join(lines) + "\n"


def library_error(data: Json) -> RelayError | None:
    code = data.get("errCode")
    failed = data.get("success") is False or (isinstance(code, int) and code != 0)
    if not failed:
        return None
    message = data.get("message") or data.get("errMsg") or f"AIProxy library error {code}"
    return RelayError(500, str(message), type=UPSTREAM_ERROR, code=code)


def convert_response(data: Json, model: str) -> Json:
    text = str(data.get("answer") or "") + references(data.get("documents"))
    return chat_completion(text, model, completion_id())


# ---------------------------------------------------------------------- stream


@dataclass
class LibraryStream:
    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = field(default_factory=completion_id)
    created: int = field(default_factory=lambda: int(time.time()))
    documents: list[Any] = field(default_factory=list)
    started: bool = False

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:") or self.saw_done:
            return None
        raw = line[5:].strip()
        if raw == DONE:
            return self._finish()
        event = parse_json_object(raw)
        if event is None:
            return None
        error = library_error(event)
        if error is not None:
            self.upstream_error = {
                "message": error.message,
                "type": UPSTREAM_ERROR,
                "param": None,
                "code": error.code,
            }
            return error_event(self.upstream_error)
        if isinstance(event.get("documents"), list) and event["documents"]:
            self.documents = event["documents"]
        frames = self._text(str(event.get("content") or ""))
        if event.get("finish") is True:
            frames += self._finish()
        return frames or None

    def _chunk(self, delta: Json, finish: str | None = None) -> bytes:
        if not self.started:
            delta = {"role": "assistant", **delta}
            self.started = True
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

    def _text(self, text: str) -> bytes:
        if not text:
            return b""
        self.generated.append(text)
        return self._chunk({"content": text})

    def _finish(self) -> bytes:
        self.saw_done = True
        frames = self._text(references(self.documents))
        return frames + self._chunk({}, "stop") + DONE_FRAME


# ---------------------------------------------------------------------- adaptor


class AIProxyLibraryAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is not RelayMode.CHAT:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type AIProxy Library"
            )
        payload = convert_request(body.payload, attempt.model, library_id(attempt), attempt.stream)
        headers = {
            "Authorization": f"Bearer {attempt.channel.key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if attempt.stream else "application/json",
        }
        url = base_url(attempt) + ASK_PATH
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(
            f"{attempt.mode.upstream_path} is not supported by channel type AIProxy Library"
        )

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        data = parse_json_object(body)
        if data is None:
            return body
        error = library_error(data)
        if error is not None:
            raise UpstreamFailure(error, retryable=True)
        return orjson.dumps(convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return LibraryStream(client_wants_usage=client_wants_usage, model=attempt.model)
