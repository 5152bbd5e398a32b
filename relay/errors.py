"""The only place that builds OpenAI-shaped error bodies for the relay."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# One API's types: its own checks answer "one_api_error"; upstream failures keep the upstream's.
ONE_API_ERROR = "one_api_error"
UPSTREAM_ERROR = "upstream_error"
INVALID_REQUEST_ERROR = "invalid_request_error"


@dataclass
class RelayError(Exception):
    status: int
    message: str
    type: str = ONE_API_ERROR
    code: str | int | None = None
    param: str | None = None
    # Response headers worth passing on (an upstream's Retry-After on a final 429).
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


def error_body(error: RelayError, request_id: str) -> dict[str, Any]:
    """`{"error": {...}}` with One API's ` (request id: X)` suffix on the message."""
    return {
        "error": {
            "message": f"{error.message} (request id: {request_id})",
            "type": error.type,
            "param": error.param or "",
            "code": error.code if error.code is not None else "",
        }
    }
