from __future__ import annotations

import orjson

from relay.streaming import DONE_FRAME, LineSplitter, StreamState


def frame(event: dict) -> bytes:
    return b"data: " + orjson.dumps(event)


def chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def test_splitter_joins_lines_split_across_reads() -> None:
    splitter = LineSplitter()

    lines = [
        *splitter.feed(b'data: {"a":'),
        *splitter.feed(b"1}\r\n\r\ndata: [DO"),
        *splitter.feed(b"NE]"),
    ]

    assert lines == [b'data: {"a":1}', b""]
    assert list(splitter.flush()) == [b"data: [DONE]"]


def test_content_events_are_forwarded_verbatim_and_text_is_kept() -> None:
    state = StreamState(client_wants_usage=False)
    line = frame(chunk({"content": "Hel"}))

    assert state.accept(line) == line + b"\n\n"
    state.accept(frame(chunk({"content": "lo"})))
    assert state.generated_text == "Hello"


def test_usage_chunk_is_kept_for_billing_but_dropped_unless_the_client_asked() -> None:
    usage_only = frame({"id": "chatcmpl-1", "choices": [], "usage": USAGE})

    silent = StreamState(client_wants_usage=False)
    asked = StreamState(client_wants_usage=True)

    assert silent.accept(usage_only) is None
    assert asked.accept(usage_only) == usage_only + b"\n\n"
    assert silent.usage == asked.usage == USAGE


def test_tool_call_arguments_and_reasoning_count_as_generated() -> None:
    state = StreamState(client_wants_usage=False)
    state.accept(frame(chunk({"reasoning_content": "think "})))
    state.accept(
        frame(
            chunk({"tool_calls": [{"index": 0, "function": {"name": "get", "arguments": '{"a"'}}]})
        )
    )
    state.accept(frame(chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]})))

    assert state.generated_text == 'think get{"a":1}'


def test_done_error_and_non_data_lines() -> None:
    state = StreamState(client_wants_usage=False)
    error = frame({"error": {"message": "boom", "type": "server_error"}})

    assert state.accept(b": keep-alive") is None
    assert state.accept(b"event: ping") is None
    assert state.accept(error) == error + b"\n\n"
    assert state.upstream_error == {"message": "boom", "type": "server_error"}
    assert state.accept(b"data: [DONE]") == DONE_FRAME
    assert state.saw_done is True


def test_legacy_completion_text_and_unparsable_payloads() -> None:
    state = StreamState(client_wants_usage=False)

    state.accept(frame({"object": "text_completion", "choices": [{"text": "abc", "index": 0}]}))
    assert state.accept(b"data: not-json") == b"data: not-json\n\n"
    assert state.generated_text == "abc"
