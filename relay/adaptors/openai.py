"""OpenAI and every upstream that speaks its API with a different base URL and key.

The body goes upstream as the client sent it (byte for byte unless the relay edited it);
vendors differ only in the URL of each mode, the modes they serve at all, and a few headers.
Two vendors report failures inside a 200 answer (MiniMax's `base_resp`, Xunfei's `code`);
those are turned into real failures here so they are neither billed nor shown as answers.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from oneapi import options
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.catalog import CHANNEL_TYPE_NAMES, DEFAULT_BASE_URLS, ChannelType
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import StreamState
from relay.upstream import is_retryable_status

CLOUDFLARE_GATEWAY = "https://gateway.ai.cloudflare.com"
# One API's fixed OpenRouter app attribution, used when the site has no address or name.
OPENROUTER_REFERER = "https://github.com/songquanpeng/one-api"
OPENROUTER_TITLE = "One API"
DOUBAO_BOT_PREFIX = "bot-"

M = RelayMode
_VERSION_SEGMENT = re.compile(r"v\d+")


def _openai_paths(*modes: RelayMode) -> dict[RelayMode, str]:
    return {mode: mode.upstream_path for mode in modes}


# The modes each vendor serves and the path of each; a type not listed is OpenAI itself or a
# reseller of it and serves every mode at OpenAI's path (save GENERIC_ONLY_MODES). Sources: One
# API's adaptors (`minimax`, `doubao`, `novita`, facts §2.2) and the vendors' API references;
# of the vendors, only OpenRouter and xAI serve the Responses API, only SiliconFlow rerank.
VENDOR_PATHS: dict[int, dict[RelayMode, str]] = {
    ChannelType.AI360: _openai_paths(M.CHAT, M.EMBEDDINGS),
    ChannelType.OPENROUTER: _openai_paths(M.CHAT, M.COMPLETIONS, M.EMBEDDINGS, M.RESPONSES),
    ChannelType.FASTGPT: _openai_paths(M.CHAT),  # a knowledge base: chat only
    ChannelType.MOONSHOT: _openai_paths(M.CHAT),
    ChannelType.BAICHUAN: _openai_paths(M.CHAT, M.EMBEDDINGS),
    ChannelType.MINIMAX: {M.CHAT: "/v1/text/chatcompletion_v2"},
    ChannelType.MISTRAL: _openai_paths(M.CHAT, M.EMBEDDINGS),
    ChannelType.GROQ: _openai_paths(
        M.CHAT, M.AUDIO_SPEECH, M.AUDIO_TRANSCRIPTION, M.AUDIO_TRANSLATION
    ),
    ChannelType.LINGYIWANWU: _openai_paths(M.CHAT),
    ChannelType.STEPFUN: _openai_paths(
        M.CHAT, M.IMAGES_GENERATIONS, M.IMAGES_EDITS, M.AUDIO_SPEECH, M.AUDIO_TRANSCRIPTION
    ),
    ChannelType.DEEPSEEK: _openai_paths(M.CHAT, M.COMPLETIONS),  # completions: FIM (beta)
    ChannelType.TOGETHERAI: _openai_paths(
        M.CHAT,
        M.COMPLETIONS,
        M.EMBEDDINGS,
        M.IMAGES_GENERATIONS,
        M.AUDIO_SPEECH,
        M.AUDIO_TRANSCRIPTION,
        M.AUDIO_TRANSLATION,
    ),
    ChannelType.DOUBAO: {
        M.CHAT: "/api/v3/chat/completions",
        M.EMBEDDINGS: "/api/v3/embeddings",
        M.IMAGES_GENERATIONS: "/api/v3/images/generations",
    },
    ChannelType.NOVITA: _openai_paths(M.CHAT, M.COMPLETIONS, M.EMBEDDINGS),
    ChannelType.SILICONFLOW: _openai_paths(
        M.CHAT,
        M.COMPLETIONS,
        M.EMBEDDINGS,
        M.IMAGES_GENERATIONS,
        M.AUDIO_SPEECH,
        M.AUDIO_TRANSCRIPTION,
        M.RERANK,
    ),
    ChannelType.XAI: _openai_paths(
        M.CHAT, M.COMPLETIONS, M.EMBEDDINGS, M.IMAGES_GENERATIONS, M.RESPONSES
    ),
    ChannelType.BAIDU_V2: {
        M.CHAT: "/v2/chat/completions",
        M.EMBEDDINGS: "/v2/embeddings",
        M.IMAGES_GENERATIONS: "/v2/images/generations",
    },
    ChannelType.XUNFEI_V2: _openai_paths(M.CHAT),
    ChannelType.ALI_BAILIAN: {
        M.CHAT: "/compatible-mode/v1/chat/completions",
        M.COMPLETIONS: "/compatible-mode/v1/completions",
        M.EMBEDDINGS: "/compatible-mode/v1/embeddings",
    },
    ChannelType.GEMINI_OPENAI_COMPATIBLE: _openai_paths(M.CHAT, M.EMBEDDINGS, M.IMAGES_GENERATIONS),
}
# Modes OpenAI itself lacks: of the types not listed above, only these pass them on (a
# self-hosted or third-party server behind Custom / OpenAI-Compatible, Jina's rerank say).
GENERIC_ONLY_MODES: dict[RelayMode, frozenset[int]] = {
    M.RERANK: frozenset({ChannelType.CUSTOM, ChannelType.OPENAI_COMPATIBLE}),
}
DOUBAO_BOT_PATH = "/api/v3/bots/chat/completions"
# Types whose base URL already is the API root (`.../v3/openai`, `.../v1beta/openai/`, or
# whatever an OpenAI-compatible server's admin wrote): paths go after it without `/v1`.
PREFIX_BASE_TYPES = frozenset(
    {
        ChannelType.OPENAI_COMPATIBLE,
        ChannelType.NOVITA,
        ChannelType.GEMINI_OPENAI_COMPATIBLE,
    }
)


def base_url(attempt: Attempt) -> str:
    channel = attempt.channel
    return (channel.base_url or DEFAULT_BASE_URLS.get(channel.type, "")).rstrip("/")


def join_url(base: str, path: str) -> str:
    """`base + path`, forgiving a base URL that already ends with the path's leading
    segments up to a version (`/v1`, `/api/v3`, `/compatible-mode/v1`): the commonest
    misconfiguration (see the base-URL FAQ) is pasting the SDK's base URL."""
    segments = path.split("/")
    for end in range(len(segments) - 1, 1, -1):
        prefix = "/".join(segments[:end])
        if _VERSION_SEGMENT.fullmatch(segments[end - 1]) and base.endswith(prefix):
            return base + path[len(prefix) :]
    return base + path


def request_url(attempt: Attempt, path: str) -> str:
    """`base + /v1/...` as One API does. The OpenAI-Compatible type (and Novita, Gemini's
    OpenAI endpoint) takes its base URL as the prefix of `/chat/completions`; Cloudflare's AI
    Gateway URLs have no `/v1` either."""
    base = base_url(attempt)
    if attempt.channel.type in PREFIX_BASE_TYPES or (
        base.startswith(CLOUDFLARE_GATEWAY) and path.startswith("/v1/")
    ):
        return base + path.removeprefix("/v1")
    return join_url(base, path)


def unsupported_mode(attempt: Attempt) -> RelayError:
    channel_type = attempt.channel.type
    name = CHANNEL_TYPE_NAMES.get(channel_type, str(channel_type))
    return RelayError(
        400,
        f"channel type {name} ({channel_type}) does not support {attempt.mode.upstream_path}",
        code="unsupported_mode",
    )


def upstream_path(attempt: Attempt) -> str:
    """The vendor's path for this attempt's mode; a 400 for a mode it does not serve."""
    channel_type, mode = attempt.channel.type, attempt.mode
    paths = VENDOR_PATHS.get(channel_type)
    if paths is None:
        generic = GENERIC_ONLY_MODES.get(mode)
        if generic is not None and channel_type not in generic:
            raise unsupported_mode(attempt)
        return mode.upstream_path
    path = paths.get(mode)
    if path is None:
        raise unsupported_mode(attempt)
    if (
        channel_type == ChannelType.DOUBAO
        and mode is RelayMode.CHAT
        and attempt.model.startswith(DOUBAO_BOT_PREFIX)
    ):
        # Ark "applications" (bots with plugins) have an endpoint of their own.
        return DOUBAO_BOT_PATH
    return path


def upstream_url(attempt: Attempt) -> str:
    return request_url(attempt, upstream_path(attempt))


def auth_headers(attempt: Attempt) -> dict[str, str]:
    return {"Authorization": f"Bearer {attempt.channel.key}"}


def openrouter_headers() -> dict[str, str]:
    """OpenRouter's app attribution: this site's address and name when set."""
    snapshot = options._snapshot.peek()  # loaded by the request already; never reload here
    address = snapshot.get_str("ServerAddress").strip() if snapshot else ""
    name = snapshot.get_str("SystemName").strip() if snapshot else ""
    return {"HTTP-Referer": address or OPENROUTER_REFERER, "X-Title": name or OPENROUTER_TITLE}


def vendor_headers(attempt: Attempt) -> dict[str, str]:
    headers = auth_headers(attempt)
    if attempt.channel.type == ChannelType.OPENROUTER:
        headers.update(openrouter_headers())
    return headers


# ---------------------------------------------------------------------- errors inside a 200

# MiniMax `base_resp.status_code`s (platform.minimaxi.com error codes) and their HTTP twins.
MINIMAX_STATUS = {
    1002: 429,  # RPM rate limit
    1004: 401,  # authentication failed
    1008: 403,  # insufficient balance
    1026: 400,  # sensitive input
    1027: 400,  # sensitive output
    1039: 429,  # TPM rate limit
    1041: 429,  # connection limit
    2013: 400,  # invalid parameters
}
# Xunfei Spark error codes: auth, rate limits and content review.
XUNFEI_STATUS = {
    10013: 400,  # input failed content review
    10014: 400,  # output failed content review
    10019: 400,  # output likely to fail review
    10907: 400,  # too many tokens
    11200: 401,  # not authorised / license
    11201: 429,  # daily quota exceeded
    11202: 429,  # QPS exceeded
    11203: 429,  # concurrency exceeded
}


def minimax_error(event: dict[str, Any]) -> RelayError | None:
    base = event.get("base_resp")
    if not isinstance(base, dict):
        return None
    code = base.get("status_code")
    if not isinstance(code, int) or code == 0:
        return None
    message = str(base.get("status_msg") or f"MiniMax error {code}")
    return RelayError(MINIMAX_STATUS.get(code, 500), message, type=UPSTREAM_ERROR, code=code)


def xunfei_error(event: dict[str, Any]) -> RelayError | None:
    code = event.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or code == 0 or event.get("choices"):
        return None
    message = str(event.get("message") or f"Xunfei error {code}")
    return RelayError(XUNFEI_STATUS.get(code, 500), message, type=UPSTREAM_ERROR, code=code)


BODY_ERRORS = {ChannelType.MINIMAX: minimax_error, ChannelType.XUNFEI_V2: xunfei_error}


def error_frame(error: RelayError) -> bytes:
    event = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": "",
            "code": error.code if error.code is not None else "",
        }
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


class CheckedStream(StreamState):
    """StreamState for vendors that put their failures in the events themselves; MiniMax's
    closing summary (a whole `message` instead of a `delta`) becomes an empty delta, its text
    having streamed already."""

    def __init__(self, channel_type: int, client_wants_usage: bool) -> None:
        super().__init__(client_wants_usage=client_wants_usage)
        self.find_error = BODY_ERRORS[channel_type]

    def accept(self, line: bytes) -> bytes | None:
        if not line.startswith(b"data:"):
            return None
        try:
            event = orjson.loads(line[5:].strip())
        except orjson.JSONDecodeError:
            return super().accept(line)
        if not isinstance(event, dict):
            return super().accept(line)
        error = self.find_error(event)
        if error is not None:
            self.upstream_error = {"message": error.message, "code": error.code}
            return error_frame(error)
        if summary_to_delta(event):
            line = b"data: " + orjson.dumps(event)
        return super().accept(line)


def summary_to_delta(event: dict[str, Any]) -> bool:
    choices = event.get("choices")
    if not isinstance(choices, list):
        return False
    changed = False
    for choice in choices:
        if isinstance(choice, dict) and "message" in choice and "delta" not in choice:
            del choice["message"]
            choice["delta"] = {}
            changed = True
    if changed:
        event["object"] = "chat.completion.chunk"
    return changed


class OpenAIAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        url = upstream_url(attempt)
        headers = vendor_headers(attempt)
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "text/event-stream" if attempt.stream else "application/json"
        return UpstreamRequest("POST", url, headers, body.to_bytes())

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        url = upstream_url(attempt)
        headers = vendor_headers(attempt)
        headers["Content-Type"] = content_type
        return UpstreamRequest("POST", url, headers, content)

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        find_error = BODY_ERRORS.get(attempt.channel.type)
        if find_error is None:
            return body
        try:
            result = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body  # the relay reports the unreadable body itself
        error = find_error(result) if isinstance(result, dict) else None
        if error is not None:
            raise UpstreamFailure(error, retryable=is_retryable_status(error.status))
        return body

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        if attempt.channel.type in BODY_ERRORS:
            return CheckedStream(attempt.channel.type, client_wants_usage)
        return StreamState(client_wants_usage=client_wants_usage)
