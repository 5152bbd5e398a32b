"""OpenAI and every upstream that speaks its API with a different base URL and key."""

from __future__ import annotations

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.catalog import DEFAULT_BASE_URLS, ChannelType
from relay.streaming import StreamState


def base_url(attempt: Attempt) -> str:
    channel = attempt.channel
    return (channel.base_url or DEFAULT_BASE_URLS.get(channel.type, "")).rstrip("/")


def request_url(attempt: Attempt, path: str) -> str:
    """`base + /v1/...` as One API does, forgiving a base URL that already ends in `/v1`
    (the commonest misconfiguration, see the base-URL FAQ). The OpenAI-Compatible type takes
    its base URL literally, as the prefix of `/chat/completions`; Cloudflare's AI Gateway
    URLs have no `/v1` either."""
    base = base_url(attempt)
    if attempt.channel.type == ChannelType.OPENAI_COMPATIBLE or base.startswith(
        "https://gateway.ai.cloudflare.com"
    ):
        return base + path.removeprefix("/v1")
    return base.removesuffix("/v1") + path


def auth_headers(attempt: Attempt) -> dict[str, str]:
    return {"Authorization": f"Bearer {attempt.channel.key}"}


class OpenAIAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        headers = auth_headers(attempt)
        headers["Content-Type"] = "application/json"
        headers["Accept"] = "text/event-stream" if attempt.stream else "application/json"
        return UpstreamRequest(
            "POST", request_url(attempt, attempt.mode.upstream_path), headers, body.to_bytes()
        )

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        headers = auth_headers(attempt)
        headers["Content-Type"] = content_type
        return UpstreamRequest(
            "POST", request_url(attempt, attempt.mode.upstream_path), headers, content
        )

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return StreamState(client_wants_usage=client_wants_usage)
