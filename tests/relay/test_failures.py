from __future__ import annotations

import httpx
import orjson

from relay.failures import SATURATED_MESSAGE, error_from_response, final_error


def test_openai_error_object_is_kept() -> None:
    body = orjson.dumps({"error": {"message": "bad", "type": "invalid_request_error", "code": "x"}})
    error = error_from_response(400, body, httpx.Headers())
    assert (error.status, error.message, error.type, error.code) == (
        400,
        "bad",
        "invalid_request_error",
        "x",
    )


def test_error_wrapped_in_a_list_is_unwrapped() -> None:
    body = orjson.dumps([{"error": {"code": 400, "message": "API key not valid", "status": "X"}}])
    error = error_from_response(400, body, httpx.Headers())
    assert error.message == "API key not valid"


def test_other_shapes_use_one_api_fields_and_fallback() -> None:
    assert error_from_response(500, b'{"msg": "m"}', httpx.Headers()).message == "m"
    assert error_from_response(500, b'{"error_msg": "e"}', httpx.Headers()).message == "e"
    html = error_from_response(502, b"<html>", httpx.Headers())
    assert (html.message, html.code, html.param) == (
        "bad response status code 502",
        "bad_response_status_code",
        "502",
    )


def test_final_429_keeps_retry_after() -> None:
    error = error_from_response(
        429,
        b'{"error": {"message": "slow down", "type": "rate"}}',
        httpx.Headers({"Retry-After": "7"}),
    )
    final = final_error(error)
    assert final.message == f"{SATURATED_MESSAGE}：slow down"
    assert (b"retry-after", b"7") in final.headers
