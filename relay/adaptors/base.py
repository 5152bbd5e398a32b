"""The interface between the relay and one upstream family.

The relay speaks OpenAI's format on both sides of every adaptor: it hands the adaptor an
OpenAI-style request body and gets back an OpenAI-style response (or stream of chunks). An
adaptor knows its upstream's URL layout, authentication and wire format, nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from channels_mgmt.selection import ChannelInfo
from relay.http import Request
from relay.modes import RelayMode


class OpenAIBody:
    """A request body as the client sent it plus the edits the relay made to it.

    Unedited bodies go upstream byte for byte; edited ones are re-serialised from the parsed
    object, which still holds every field the client sent (none is ever dropped)."""

    def __init__(self, raw: bytes, payload: dict[str, Any]) -> None:
        self.raw = raw
        self.payload = payload
        self.edited = False

    def set(self, name: str, value: Any) -> None:
        self.payload[name] = value
        self.edited = True

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.payload) if self.edited else self.raw


@dataclass
class Attempt:
    """One try of a request against one channel."""

    channel: ChannelInfo
    mode: RelayMode
    model: str  # the name sent upstream and billed: after the channel's model mapping
    stream: bool
    request: Request


@dataclass
class UpstreamRequest:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes = b""
    extensions: dict[str, Any] = field(default_factory=dict)


class StreamTranslator(Protocol):
    """Turns upstream stream lines into OpenAI SSE frames, keeping what billing needs."""

    usage: dict[str, Any] | None
    saw_done: bool
    upstream_error: dict[str, Any] | None

    def accept(self, line: bytes) -> bytes | None: ...

    @property
    def generated_text(self) -> str: ...


class Adaptor(ABC):
    @abstractmethod
    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        """The HTTP request for this upstream, from an OpenAI-format JSON body."""

    @abstractmethod
    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        """The HTTP request for a body passed through as is (multipart uploads)."""

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        """The upstream's successful non-stream body, in OpenAI's format."""
        return body

    @abstractmethod
    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        """A fresh translator for one streamed response.

        A translator for a binary stream (AWS's event-stream) defines
        `accept_bytes(chunk: bytes) -> bytes | None`; the relay then feeds it the raw body
        instead of lines."""

    async def prepare(self, attempt: Attempt) -> None:
        """Obtain what `build_request` needs that costs I/O (an access token exchanged for
        the channel's key), off the event loop; `build_request` then finds it cached."""
        return None  # most upstreams take the channel's key as it is

    async def send(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        """Send the request; the response's body is not read yet. Upstreams that are not one
        HTTP exchange (Xunfei's WebSocket) override this and return a response whose body
        they produce themselves, in the format their translator reads."""
        from relay.transport import send_upstream

        return await send_upstream(call)
