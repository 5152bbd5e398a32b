"""Relay paths and the handlers that answer them, with or without the `/v1` prefix."""

from __future__ import annotations

import re
from functools import partial

from relay import info, media, proxy, text
from relay.http import ErrorResponder, Handler, error_response
from relay.inbound import anthropic_messages, rerank, responses
from relay.modes import RelayMode

# Top-level path segments that belong to the relay when a client leaves out `/v1` (a base
# URL configured as the bare host, see the base-URL FAQ).
BARE_PREFIXES = frozenset(
    {
        "chat",
        "completions",
        "embeddings",
        "engines",
        "moderations",
        "edits",
        "images",
        "audio",
        "models",
        "files",
        "fine_tuning",
        "assistants",
        "threads",
        "messages",
        "responses",
        "rerank",
    }
)

_NOT_IMPLEMENTED = r"/(files|fine_tuning|assistants|threads)(/.*)?"

# (methods, pattern on the path without /v1, handler); first match wins.
ROUTES: list[tuple[frozenset[str], re.Pattern[str], Handler]] = [
    (
        frozenset({"POST"}),
        re.compile(r"/chat/completions"),
        partial(text.relay_text, mode=RelayMode.CHAT),
    ),
    (
        frozenset({"POST"}),
        re.compile(r"/completions"),
        partial(text.relay_text, mode=RelayMode.COMPLETIONS),
    ),
    (
        frozenset({"POST"}),
        re.compile(r"/embeddings"),
        partial(text.relay_text, mode=RelayMode.EMBEDDINGS),
    ),
    (
        frozenset({"POST"}),
        re.compile(r"/engines/(?P<model>[^/]+)/embeddings"),
        partial(text.relay_text, mode=RelayMode.EMBEDDINGS),
    ),
    (
        frozenset({"POST"}),
        re.compile(r"/moderations"),
        partial(text.relay_text, mode=RelayMode.MODERATIONS),
    ),
    (frozenset({"POST"}), re.compile(r"/edits"), partial(text.relay_text, mode=RelayMode.EDITS)),
    (frozenset({"POST"}), re.compile(r"/messages"), anthropic_messages.relay_messages),
    (frozenset({"POST"}), re.compile(r"/messages/count_tokens"), anthropic_messages.count_tokens),
    (frozenset({"POST"}), re.compile(r"/responses"), responses.relay_responses),
    # Stored responses live with the upstream that made them (see relay.inbound.responses).
    (
        frozenset({"GET", "POST", "DELETE"}),
        re.compile(r"/responses/.+"),
        info.not_implemented,
    ),
    (frozenset({"POST"}), re.compile(r"/rerank"), rerank.relay_rerank),
    (
        frozenset({"POST"}),
        re.compile(r"/images/generations"),
        partial(media.relay_image, mode=RelayMode.IMAGES_GENERATIONS),
    ),
    (
        frozenset({"POST"}),
        re.compile(r"/images/edits"),
        partial(media.relay_image, mode=RelayMode.IMAGES_EDITS),
    ),
    (
        frozenset({"POST"}),
        re.compile(r"/images/variations"),
        partial(media.relay_image, mode=RelayMode.IMAGES_VARIATIONS),
    ),
    (frozenset({"POST"}), re.compile(r"/audio/speech"), media.relay_speech),
    (
        frozenset({"POST"}),
        re.compile(r"/audio/transcriptions"),
        partial(media.relay_transcription, mode=RelayMode.AUDIO_TRANSCRIPTION),
    ),
    (
        frozenset({"POST"}),
        re.compile(r"/audio/translations"),
        partial(media.relay_transcription, mode=RelayMode.AUDIO_TRANSLATION),
    ),
    (frozenset({"GET"}), re.compile(r"/models"), info.list_models),
    (frozenset({"GET"}), re.compile(r"/models/(?P<model>.+)"), info.retrieve_model),
    (frozenset({"DELETE"}), re.compile(r"/models/(?P<model>.+)"), info.not_implemented),
    (frozenset({"GET"}), re.compile(r"/dashboard/billing/subscription"), info.billing_subscription),
    (frozenset({"GET"}), re.compile(r"/dashboard/billing/usage"), info.billing_usage),
    (
        frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}),
        re.compile(r"/oneapi/proxy/(?P<channel_id>[^/]+)/(?P<path>.*)"),
        proxy.relay_proxy,
    ),
    (frozenset({"GET", "POST", "DELETE"}), re.compile(_NOT_IMPLEMENTED), info.not_implemented),
]


def is_relay_path(path: str) -> bool:
    """Whether the relay (not Django) answers this path."""
    if path == "/v1" or path.startswith("/v1/"):
        return True
    if path.startswith("/dashboard/billing/"):
        return True
    first = path.split("/", 2)[1] if path.startswith("/") else ""
    return first in BARE_PREFIXES


def resolve(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    route = path.removeprefix("/v1") if path.startswith("/v1/") else path
    for methods, pattern, handler in ROUTES:
        if method in methods:
            match = pattern.fullmatch(route)
            if match:
                return handler, match.groupdict()
    return info.not_found, {}


def error_shape(path: str) -> ErrorResponder:
    """Anthropic's error body on its Messages paths, OpenAI's everywhere else."""
    route = path.removeprefix("/v1") if path.startswith("/v1/") else path
    if route == "/messages" or route.startswith("/messages/"):
        return anthropic_messages.error_response
    return error_response
