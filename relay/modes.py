"""What kind of relay a request is, decided by its path (One API's `relaymode`)."""

from __future__ import annotations

from enum import Enum


class RelayMode(Enum):
    """Each mode with the path it has on an OpenAI-style upstream and its default model."""

    CHAT = ("/v1/chat/completions", "")
    COMPLETIONS = ("/v1/completions", "")
    EMBEDDINGS = ("/v1/embeddings", "")
    MODERATIONS = ("/v1/moderations", "text-moderation-stable")
    EDITS = ("/v1/edits", "")
    IMAGES_GENERATIONS = ("/v1/images/generations", "dall-e-2")
    IMAGES_EDITS = ("/v1/images/edits", "dall-e-2")
    IMAGES_VARIATIONS = ("/v1/images/variations", "dall-e-2")
    AUDIO_SPEECH = ("/v1/audio/speech", "")
    AUDIO_TRANSCRIPTION = ("/v1/audio/transcriptions", "whisper-1")
    AUDIO_TRANSLATION = ("/v1/audio/translations", "whisper-1")
    # Inbound formats beyond One API's (issue 6).
    MESSAGES = ("/v1/messages", "")  # Anthropic's Messages API
    RESPONSES = ("/v1/responses", "")  # OpenAI's Responses API
    RERANK = ("/v1/rerank", "")  # Cohere/Jina-style rerank

    def __init__(self, upstream_path: str, default_model: str) -> None:
        self.upstream_path = upstream_path
        self.default_model = default_model

    @property
    def streams(self) -> bool:
        """Modes whose OpenAI responses can be server-sent events."""
        return self in (RelayMode.CHAT, RelayMode.COMPLETIONS)
