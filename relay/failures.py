"""Upstream failures: One API's reading of an error body, and whether to try elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from relay.errors import UPSTREAM_ERROR, RelayError
from relay.upstream import is_retryable_exception, is_retryable_status

SATURATED_MESSAGE = "当前分组上游负载已饱和，请稍后再试"


@dataclass
class UpstreamFailure(Exception):
    """An attempt that failed on one channel; `error` is what the client would see."""

    error: RelayError
    retryable: bool
    # Whether the failure says something about the channel itself (auto-disable looks at it).
    from_upstream: bool = True


def _message_from(data: dict[str, Any]) -> str:
    """One API's `GeneralErrorResponse.ToMessage`: the first message-like field present."""
    for name in ("message", "msg", "err", "error_msg"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    for outer, inner in (("header", None), ("response", "error")):
        nested = data.get(outer)
        if inner is not None and isinstance(nested, dict):
            nested = nested.get(inner)
        if isinstance(nested, dict) and isinstance(nested.get("message"), str):
            return nested["message"]
    error = data.get("error")
    if isinstance(error, str) and error:
        return error
    return ""


def error_from_response(status: int, body: bytes, headers: httpx.Headers) -> RelayError:
    """The upstream's own OpenAI error object when it sent one, else One API's wrapper."""
    error = RelayError(
        status, "", type=UPSTREAM_ERROR, code="bad_response_status_code", param=str(status)
    )
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]  # Google's OpenAI-compatible endpoint wraps its error in a list
    if isinstance(data, dict):
        upstream = data.get("error")
        if isinstance(upstream, dict) and upstream.get("message"):
            error.message = str(upstream["message"])
            error.type = str(upstream.get("type") or UPSTREAM_ERROR)
            error.code = upstream.get("code")
            param = upstream.get("param")
            error.param = str(param) if param is not None else None
        else:
            error.message = _message_from(data)
    if not error.message:
        error.message = f"bad response status code {status}"
    retry_after = headers.get("retry-after")
    if retry_after:
        error.headers.append((b"retry-after", retry_after.encode("latin-1")))
    return error


def failure_from_response(status: int, body: bytes, headers: httpx.Headers) -> UpstreamFailure:
    return UpstreamFailure(
        error_from_response(status, body, headers), retryable=is_retryable_status(status)
    )


def failure_from_exception(error: Exception) -> UpstreamFailure:
    """A request that got no answer: One API's `do_request_failed`, as a 500."""
    message = str(error) or type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        message = f"upstream timed out: {message}"
    return UpstreamFailure(
        RelayError(500, message, code="do_request_failed"),
        retryable=is_retryable_exception(error),
    )


def final_error(error: RelayError) -> RelayError:
    """What the client sees after the last attempt: a 429 keeps its status, with One API's
    saturation message in front of the upstream's own reason."""
    if error.status == 429:
        return RelayError(
            429,
            f"{SATURATED_MESSAGE}：{error.message}",
            type=error.type,
            code=error.code,
            param=error.param,
            headers=error.headers,
        )
    return error
