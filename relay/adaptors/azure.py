"""Azure OpenAI: OpenAI's API behind per-deployment URLs, an `api-version` and an `api-key`.

`{base}/openai/deployments/{deployment}/{task}?api-version={version}`, where the deployment
is the model name without dots (One API's rule: Azure's gpt-3.5 deployments are called
`gpt-35-turbo`) unless the channel's model mapping names it, and the version comes from the
channel's config, else its legacy `other` field, else a recent GA version. Bodies and
answers are OpenAI's; Azure's stream quirks (a first chunk with no choices carrying
`prompt_filter_results`, `content_filter_results` on every choice) are what `StreamState`
already copes with.

The Responses API has no deployment path: it lives at the resource's root, the deployment
named by the body's `model`, either in the v1 API (`/openai/v1/responses?api-version=preview`)
or, for a channel pinned to a dated preview from 2025-03-01-preview on, at
`/openai/responses?api-version=<that version>`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.openai import CLOUDFLARE_GATEWAY, base_url, unsupported_mode
from relay.modes import RelayMode
from relay.streaming import StreamState

# The newest generally available data-plane (inference) version.
DEFAULT_API_VERSION = "2024-10-21"
# `stream_options` (usage in streams) is accepted from this version on; older ones answer
# 400 "Unrecognized request argument supplied: stream_options".
STREAM_USAGE_SINCE = "2024-09-01"
# The first dated (preview) version that has `/openai/responses`.
RESPONSES_SINCE = "2025-03-01"
# The v1 API's version labels; anything else gets `preview` there.
V1_LABELS = frozenset({"preview", "latest"})
_DATED_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}")

# The path after `/openai/deployments/{deployment}/` of each mode Azure serves; it has no
# moderations, edits or image variations.
TASKS: dict[RelayMode, str] = {
    mode: mode.upstream_path.removeprefix("/v1/")
    for mode in (
        RelayMode.CHAT,
        RelayMode.COMPLETIONS,
        RelayMode.EMBEDDINGS,
        RelayMode.IMAGES_GENERATIONS,
        RelayMode.IMAGES_EDITS,
        RelayMode.AUDIO_SPEECH,
        RelayMode.AUDIO_TRANSCRIPTION,
        RelayMode.AUDIO_TRANSLATION,
    )
}


def api_version(attempt: Attempt) -> str:
    channel = attempt.channel
    configured = channel.config.get("api_version")
    if isinstance(configured, str) and configured.strip():
        return configured.strip()
    return channel.other.strip() or DEFAULT_API_VERSION


def deployment_name(attempt: Attempt) -> str:
    """A model the channel's mapping produced is the deployment's name as the admin wrote
    it; any other model loses its dots, as in One API."""
    model = attempt.model
    if model in attempt.channel.model_mapping.values():
        return model
    return model.replace(".", "")


def accepts_stream_options(version: str) -> bool:
    dated = _DATED_VERSION.match(version)
    return dated is None or dated.group() >= STREAM_USAGE_SINCE


def responses_url(attempt: Attempt) -> str:
    base = base_url(attempt)
    if base.startswith(CLOUDFLARE_GATEWAY):
        raise unsupported_mode(attempt)  # the gateway maps deployment paths only
    root = base.removesuffix("/v1").removesuffix("/openai")
    version = api_version(attempt)
    dated = _DATED_VERSION.match(version)
    if dated is not None and dated.group() >= RESPONSES_SINCE and "preview" in version:
        return f"{root}/openai/responses?api-version=" + quote(version, safe="")
    label = version if version in V1_LABELS else "preview"
    return f"{root}/openai/v1/responses?api-version={label}"


def azure_url(attempt: Attempt) -> str:
    if attempt.mode is RelayMode.RESPONSES:
        return responses_url(attempt)
    task = TASKS.get(attempt.mode)
    if task is None:
        raise unsupported_mode(attempt)
    base = base_url(attempt)
    deployment = quote(deployment_name(attempt), safe="")
    query = "?api-version=" + quote(api_version(attempt), safe="")
    if base.startswith(CLOUDFLARE_GATEWAY):
        # The gateway's `.../azure-openai/{resource}` stands for `/openai/deployments`.
        return f"{base}/{deployment}/{task}{query}"
    return f"{base.removesuffix('/openai')}/openai/deployments/{deployment}/{task}{query}"


def azure_headers(attempt: Attempt, content_type: str) -> dict[str, str]:
    return {"api-key": attempt.channel.key, "Content-Type": content_type}


class AzureAdaptor(Adaptor):
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        url = azure_url(attempt)
        if (
            attempt.mode is not RelayMode.RESPONSES  # the channel's version is not used there
            and "stream_options" in body.payload
            and not accepts_stream_options(api_version(attempt))
        ):
            # The relay asks for stream usage on its own; an old version would refuse the
            # whole request for it, so it counts the text instead.
            body.payload.pop("stream_options")
            body.edited = True
        deployment = deployment_name(attempt)
        if attempt.mode is RelayMode.RESPONSES and body.payload.get("model") != deployment:
            body.set("model", deployment)  # no deployment path: the body names it
        headers = azure_headers(attempt, "application/json")
        headers["Accept"] = "text/event-stream" if attempt.stream else "application/json"
        return UpstreamRequest("POST", url, headers, body.to_bytes())

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        return UpstreamRequest(
            "POST", azure_url(attempt), azure_headers(attempt, content_type), content
        )

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return StreamState(client_wants_usage=client_wants_usage)
