"""multipart/form-data (RFC 7578): just enough to read a form and write it back.

The relay reads a few plain fields (model, size, n...) of an upload and, when a channel maps
the model, sends the same form with only that field changed. Every other part goes out as
it came in: its header block verbatim (filename encodings differ between clients, and no
parser normalises them all) and its content byte for byte.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import unquote

CRLF = b"\r\n"
MAX_BOUNDARY_LENGTH = 70  # RFC 2046


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


def parse_header_value(value: str) -> tuple[str, dict[str, str]]:
    """`type; a=b; c="d;e"` as ("type", {"a": "b", "c": "d;e"}); names lower-cased.

    In quoted values only `\\"` and `\\\\` are unescaped: browsers send a backslash in a
    filename as is, while other clients escape it, and both must read back sensibly."""
    head, _, rest = value.partition(";")
    params: dict[str, str] = {}
    index, end = 0, len(rest)
    while index < end:
        while index < end and rest[index] in " \t;":
            index += 1
        equals = rest.find("=", index)
        semicolon = rest.find(";", index)
        if equals == -1 or (semicolon != -1 and semicolon < equals):
            index = end if semicolon == -1 else semicolon + 1  # a flag without a value
            continue
        name = rest[index:equals].strip().lower()
        index = equals + 1
        while index < end and rest[index] in " \t":
            index += 1
        if index < end and rest[index] == '"':
            param, index = _quoted_string(rest, index + 1)
        else:
            stop = rest.find(";", index)
            stop = end if stop == -1 else stop
            param, index = rest[index:stop].strip(), stop
        params.setdefault(name, param)
    return head.strip().lower(), params


def _quoted_string(text: str, index: int) -> tuple[str, int]:
    """The value of a quoted string whose opening quote is just before `index`, and the
    position after its closing quote."""
    chars: list[str] = []
    while index < len(text) and text[index] != '"':
        if text[index] == "\\" and text[index + 1 : index + 2] in ('"', "\\"):
            index += 1
        chars.append(text[index])
        index += 1
    return "".join(chars), index + 1


def _extended_value(value: str) -> str | None:
    """An RFC 5987 `charset'language'percent-encoded` value (`filename*`)."""
    charset, quote, rest = value.partition("'")
    _language, quote2, encoded = rest.partition("'")
    if not quote or not quote2:
        return None
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None


def _quote(value: str) -> str:
    """A quoted-string for a header we write ourselves; line breaks can never appear raw."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "%0D").replace("\n", "%0A") + '"'


@dataclass(frozen=True)
class Part:
    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None
    # The header block as received (without the blank line), re-sent verbatim; None for
    # parts the relay made, whose headers are written from the fields above.
    raw_headers: bytes | None = None

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace")

    def header_block(self) -> bytes:
        if self.raw_headers is not None:
            return self.raw_headers
        disposition = f"form-data; name={_quote(self.name)}"
        if self.filename is not None:
            disposition += f"; filename={_quote(self.filename)}"
        lines = [f"Content-Disposition: {disposition}"]
        if self.content_type:
            lines.append(f"Content-Type: {self.content_type}")
        return "\r\n".join(lines).encode("utf-8")


@dataclass(frozen=True)
class Form:
    parts: tuple[Part, ...]

    def value(self, name: str) -> str | None:
        """The first plain (non-file) field of that name, as Go's FormValue reads it."""
        for part in self.parts:
            if part.name == name and not part.is_file:
                return part.text
        return None

    def fields(self) -> dict[str, str]:
        """Every plain field's first value."""
        values: dict[str, str] = {}
        for part in self.parts:
            if not part.is_file:
                values.setdefault(part.name, part.text)
        return values

    def with_value(self, name: str, value: str) -> Form:
        """The same form with every plain field `name` set to `value` (appended if none)."""
        replacement = Part(name, value.encode("utf-8"))
        parts: list[Part] = []
        replaced = False
        for part in self.parts:
            if part.name == name and not part.is_file:
                part, replaced = replacement, True
            parts.append(part)
        if not replaced:
            parts.append(replacement)
        return Form(tuple(parts))

    def encode(self) -> tuple[bytes, str]:
        """The body and its Content-Type, with a boundary found in no part."""
        boundary = _fresh_boundary(self.parts)
        delimiter = b"--" + boundary.encode("ascii")
        chunks: list[bytes] = []
        for part in self.parts:
            chunks += [delimiter, CRLF, part.header_block(), CRLF, CRLF, part.data, CRLF]
        chunks += [delimiter, b"--", CRLF]
        return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _fresh_boundary(parts: tuple[Part, ...]) -> str:
    while True:
        boundary = "oneapi-" + secrets.token_hex(16)
        marker = boundary.encode("ascii")
        if not any(marker in part.data or marker in part.header_block() for part in parts):
            return boundary


def boundary_of(content_type: str) -> str:
    kind, params = parse_header_value(content_type)
    if kind != "multipart/form-data":
        raise MultipartError("Content-Type is not multipart/form-data")
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > MAX_BOUNDARY_LENGTH or not boundary.isascii():
        raise MultipartError("missing or invalid multipart boundary")
    return boundary


def parse_form(body: bytes, content_type: str) -> Form:
    """Parse a whole body; any deviation from the format (including a missing final
    boundary, i.e. a truncated upload) raises `MultipartError`."""
    delimiter = b"--" + boundary_of(content_type).encode("ascii")
    separator = CRLF + delimiter
    if body.startswith(delimiter):
        position = len(delimiter)
    else:  # a preamble comes first
        found = body.find(separator)
        if found == -1:
            raise MultipartError("no multipart boundary in the body")
        position = found + len(separator)
    parts: list[Part] = []
    while not body.startswith(b"--", position):
        line_end = body.find(CRLF, position)
        if line_end == -1 or body[position:line_end].strip(b" \t"):
            raise MultipartError("malformed multipart boundary line")
        start = line_end + len(CRLF)
        end = body.find(separator, start)
        if end == -1:
            raise MultipartError("multipart body ends before its closing boundary")
        parts.append(_parse_part(body[start:end]))
        position = end + len(separator)
    return Form(tuple(parts))


def _parse_part(chunk: bytes) -> Part:
    if chunk.startswith(CRLF):
        raw_headers, data = b"", chunk[len(CRLF) :]
    else:
        split = chunk.find(CRLF + CRLF)
        if split == -1:
            raise MultipartError("multipart part without a header block")
        raw_headers, data = chunk[:split], chunk[split + 4 :]
    headers = _parse_headers(raw_headers)
    disposition, params = parse_header_value(headers.get("content-disposition", ""))
    if disposition != "form-data" or "name" not in params:
        raise MultipartError("multipart part without a form-data name")
    filename = params.get("filename")
    if "filename*" in params:
        filename = _extended_value(params["filename*"]) or filename
    return Part(
        name=params["name"],
        data=data,
        filename=filename,
        content_type=headers.get("content-type"),
        raw_headers=raw_headers,
    )


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", errors="replace").split("\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError(f"malformed multipart header line: {line[:100]!r}")
        headers.setdefault(name.strip().lower(), value.strip())
    return headers
