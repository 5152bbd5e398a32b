"""AWS's binary event-stream framing (`application/vnd.amazon.eventstream`), decoding only.

Bedrock's streaming answers are a sequence of length-prefixed messages, each:

    total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes (uint32)
    headers: name length (uint8), name, value type (uint8), value ...
    payload
    CRC32 of everything before it (uint32)

All integers are big-endian, the CRC is zlib's CRC-32. Messages arrive split across and
packed into network reads in any way, so `EventStreamDecoder` buffers bytes until a whole
message is in and checks both CRCs before handing it out: a corrupt stream is an error,
never a half-parsed event.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any

PRELUDE_LENGTH = 12  # total length, headers length, prelude CRC
CRC_LENGTH = 4
MIN_MESSAGE_LENGTH = PRELUDE_LENGTH + CRC_LENGTH
# AWS's limits: 128 KiB of headers, 16 MiB per message. A larger length means a corrupt
# prelude (caught by its CRC) or an upstream we should not buffer for.
MAX_HEADERS_LENGTH = 128 * 1024
MAX_MESSAGE_LENGTH = 16 * 1024 * 1024

_UINT32 = struct.Struct(">I")
_PRELUDE = struct.Struct(">III")


class EventStreamError(ValueError):
    """The bytes are not a valid event stream (bad CRC, impossible lengths, bad headers)."""


@dataclass(frozen=True)
class Message:
    headers: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""

    @property
    def message_type(self) -> str:
        """`event`, `exception` (a modelled error) or `error` (a transport-level one)."""
        value = self.headers.get(":message-type")
        return value if isinstance(value, str) else "event"

    @property
    def event_type(self) -> str | None:
        value = self.headers.get(":event-type")
        return value if isinstance(value, str) else None

    @property
    def exception_type(self) -> str | None:
        value = self.headers.get(":exception-type")
        return value if isinstance(value, str) else None


def _take(data: bytes, offset: int, length: int) -> tuple[bytes, int]:
    end = offset + length
    if end > len(data):
        raise EventStreamError("header value runs past the headers section")
    return data[offset:end], end


def _int(data: bytes, offset: int, fmt: str) -> tuple[int, int]:
    size = struct.calcsize(fmt)
    raw, offset = _take(data, offset, size)
    return struct.unpack(fmt, raw)[0], offset


def _header_value(data: bytes, offset: int, kind: int) -> tuple[Any, int]:
    """One value of wire type `kind` at `offset`; returns it and the offset after it."""
    if kind == 0:
        return True, offset
    if kind == 1:
        return False, offset
    if kind == 2:
        return _int(data, offset, ">b")
    if kind == 3:
        return _int(data, offset, ">h")
    if kind == 4:
        return _int(data, offset, ">i")
    if kind in (5, 8):  # int64, and timestamps as milliseconds since the epoch
        return _int(data, offset, ">q")
    if kind in (6, 7):  # byte array, string: uint16 length first
        length, offset = _int(data, offset, ">H")
        raw, offset = _take(data, offset, length)
        if kind == 6:
            return raw, offset
        try:
            return raw.decode("utf-8"), offset
        except UnicodeDecodeError:
            raise EventStreamError("string header is not UTF-8") from None
    if kind == 9:
        raw, offset = _take(data, offset, 16)
        return uuid.UUID(bytes=raw), offset
    raise EventStreamError(f"unknown header value type {kind}")


def parse_headers(data: bytes) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    offset = 0
    while offset < len(data):
        name_length = data[offset]
        raw_name, offset = _take(data, offset + 1, name_length)
        if not raw_name:
            raise EventStreamError("empty header name")
        if offset >= len(data):
            raise EventStreamError("header without a value type")
        value, offset = _header_value(data, offset + 1, data[offset])
        headers[raw_name.decode("utf-8", "replace")] = value
    return headers


def _check_prelude(prelude: bytes) -> tuple[int, int]:
    total, headers_length, prelude_crc = _PRELUDE.unpack(prelude)
    if zlib.crc32(prelude[:8]) != prelude_crc:
        raise EventStreamError("event-stream prelude CRC mismatch")
    if not MIN_MESSAGE_LENGTH <= total <= MAX_MESSAGE_LENGTH:
        raise EventStreamError(f"event-stream message length {total} out of range")
    if headers_length > min(MAX_HEADERS_LENGTH, total - MIN_MESSAGE_LENGTH):
        raise EventStreamError(f"event-stream headers length {headers_length} out of range")
    return total, headers_length


def decode_message(frame: bytes) -> Message:
    """One complete message (exactly its bytes), both CRCs checked."""
    if len(frame) < MIN_MESSAGE_LENGTH:
        raise EventStreamError("event-stream message shorter than its prelude")
    total, headers_length = _check_prelude(frame[:PRELUDE_LENGTH])
    if total != len(frame):
        raise EventStreamError(f"event-stream message is {len(frame)} bytes, prelude says {total}")
    (message_crc,) = _UINT32.unpack(frame[-CRC_LENGTH:])
    if zlib.crc32(frame[:-CRC_LENGTH]) != message_crc:
        raise EventStreamError("event-stream message CRC mismatch")
    headers_end = PRELUDE_LENGTH + headers_length
    return Message(parse_headers(frame[PRELUDE_LENGTH:headers_end]), frame[headers_end:-CRC_LENGTH])


class EventStreamDecoder:
    """Bytes in, whole messages out; keeps the incomplete tail for the next `feed`."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._expected: int | None = None  # total length of the message being collected

    @property
    def pending(self) -> int:
        """Bytes of a message not complete yet (non-zero at the end means a cut stream)."""
        return len(self._buffer)

    def feed(self, chunk: bytes) -> list[Message]:
        self._buffer += chunk
        messages: list[Message] = []
        while True:
            if self._expected is None:
                if len(self._buffer) < PRELUDE_LENGTH:
                    break
                # Checked before waiting for the rest: a corrupt length must not make us
                # buffer megabytes for a message that will never complete.
                self._expected, _ = _check_prelude(bytes(self._buffer[:PRELUDE_LENGTH]))
            if len(self._buffer) < self._expected:
                break
            frame = bytes(self._buffer[: self._expected])
            del self._buffer[: self._expected]
            self._expected = None
            messages.append(decode_message(frame))
        return messages
