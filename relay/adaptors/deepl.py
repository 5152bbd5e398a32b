"""DeepL translation as a chat model: `deepl-XX` translates the last user message into XX.

`POST {base}/v2/translate` with `Authorization: DeepL-Auth-Key <key>` and a JSON body
`{text: [...], target_lang}`; the answer `{translations: [{detected_source_language, text}]}`
becomes a `chat.completion` whose content is the translation. Free keys (ending in `:fx`)
only work on api-free.deepl.com and Pro keys only on api.deepl.com, so the host follows the
key unless the channel names a base URL of its own (a proxy).

DeepL bills characters, and so does One API (the source text's length as prompt tokens,
no completion tokens): the usage here is DeepL's own `billed_characters` when it reports
them, else the length of the text sent.

DeepL cannot stream. A stream request is sent as the same plain request; the relay sees
the JSON answer and replays it as chunks (`fake_stream`: `relay.text` turns any JSON answer
to a stream request into `json_to_stream_frames`' frames), the whole translation in one
chunk, then the finish chunk and `[DONE]`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.common import client_payload
from relay.adaptors.coze import (
    chat_completion,
    chat_messages,
    completion_id,
    content_text,
    parse_json_object,
    refuse_unsupported,
    unsupported,
)
from relay.errors import RelayError
from relay.modes import RelayMode
from relay.streaming import completion_frames

FREE_URL = "https://api-free.deepl.com"
PRO_URL = "https://api.deepl.com"
FREE_KEY_SUFFIX = ":fx"
TRANSLATE_PATH = "/v2/translate"
MODEL_PREFIX = "deepl-"
DEFAULT_TARGET = "ZH"  # One API's for a model name without a language

Json = dict[str, Any]


# ---------------------------------------------------------------------- request


def api_base(base_url: str, key: str) -> str:
    configured = base_url.rstrip("/")
    if configured and configured not in (FREE_URL, PRO_URL):
        return configured
    return FREE_URL if key.endswith(FREE_KEY_SUFFIX) else PRO_URL


def target_language(model: str) -> str:
    """`deepl-zh` → ZH, `deepl-en-us` → EN-US (DeepL's codes are upper case)."""
    if not model.startswith(MODEL_PREFIX):
        return DEFAULT_TARGET
    return model[len(MODEL_PREFIX) :].upper() or DEFAULT_TARGET


def source_text(payload: Json) -> str:
    """The last user message (the last message at all when no user spoke)."""
    messages = chat_messages(payload)
    users = [m for m in messages if m.get("role") == "user"]
    chosen = (users or messages)[-1:] if messages else []
    text = content_text(chosen[0].get("content"), "DeepL") if chosen else ""
    if not text.strip():
        raise RelayError(400, "there is no text to translate", code="invalid_text_request")
    return text


def convert_request(payload: Json, model: str) -> Json:
    refuse_unsupported(payload, "DeepL")
    return {
        "text": [source_text(payload)],
        "target_lang": target_language(model),
        "show_billed_characters": True,
    }


# ---------------------------------------------------------------------- response


def translation_usage(translations: list[Json], source: str) -> Json:
    billed = [t.get("billed_characters") for t in translations]
    if billed and all(isinstance(b, int) and not isinstance(b, bool) for b in billed):
        characters = sum(billed)  # type: ignore[arg-type]
    else:
        characters = len(source)
    return {"prompt_tokens": characters, "completion_tokens": 0, "total_tokens": characters}


def convert_response(data: Json, model: str, source: str) -> Json:
    raw = data.get("translations")
    translations = [t for t in raw if isinstance(t, dict)] if isinstance(raw, list) else []
    text = "".join(str(t.get("text") or "") for t in translations)
    return chat_completion(text, model, completion_id(), translation_usage(translations, source))


def json_to_stream_frames(completion: Json, client_wants_usage: bool) -> bytes:
    """A whole translation as the frames of a stream: the text in one chunk, the finish
    chunk, the usage chunk if the client asked for it, `[DONE]`."""
    return completion_frames(completion, client_wants_usage)


# ---------------------------------------------------------------------- stream


@dataclass
class JsonAnswerStream:
    """For an upstream that answers a stream request with one JSON body but labels it an
    event stream: the body's lines are gathered until they parse, then replayed as chunks.
    (A correctly labelled JSON answer never reaches a translator: `relay.text` replays it.)"""

    client_wants_usage: bool
    convert: Callable[[Json], Json]
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    buffer: bytes = b""

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def accept(self, line: bytes) -> bytes | None:
        if self.saw_done:
            return None
        self.buffer += line + b"\n"
        data = parse_json_object(self.buffer)
        if data is None:
            return None
        completion = self.convert(data)
        self.usage = completion.get("usage")
        for choice in completion["choices"]:
            self.generated.append(str(choice["message"].get("content") or ""))
        self.saw_done = True
        return json_to_stream_frames(completion, self.client_wants_usage)


# ---------------------------------------------------------------------- adaptor


class DeepLAdaptor(Adaptor):
    # DeepL cannot stream: stream requests get the JSON answer replayed as chunks.
    fake_stream = True

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        if attempt.mode is not RelayMode.CHAT:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type DeepL"
            )
        payload = convert_request(body.payload, attempt.model)
        channel = attempt.channel
        headers = {
            "Authorization": f"DeepL-Auth-Key {channel.key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        url = api_base(channel.base_url, channel.key) + TRANSLATE_PATH
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type DeepL")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        data = parse_json_object(body)
        if data is None:
            return body
        source = source_text(client_payload(attempt))
        return orjson.dumps(convert_response(data, attempt.model, source))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        source = source_text(client_payload(attempt))
        return JsonAnswerStream(
            client_wants_usage=client_wants_usage,
            convert=lambda data: convert_response(data, attempt.model, source),
        )
