"""The AWS Bedrock adaptor: event-stream decoding, SigV4, conversions, then the relay
against a fake Bedrock that checks every signature."""

from __future__ import annotations

import base64
import datetime
import json
import struct
import uuid
import zlib
from collections.abc import Iterator
from typing import Any
from unittest import mock

import httpx
import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from relay.adaptors import adaptor_for, aws
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.eventstream import (
    EventStreamDecoder,
    EventStreamError,
    Message,
    decode_message,
    parse_headers,
)
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import SATURATED_MESSAGE, UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from relay.streaming import LineSplitter
from tests.factories import make_channel
from tests.fakes.bedrock_upstream import (
    SIGNATURE_MISMATCH,
    FakeBedrock,
    encode_message,
    exception_message,
)
from tests.relay.conftest import World

CLAUDE = "claude-3-5-sonnet-20240620"
CLAUDE_ID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
LLAMA = "llama3-8b-8192"
LLAMA_ID = "meta.llama3-8b-instruct-v1:0"
ACCESS_KEY = "AKIDFAKEBEDROCK"
SECRET_KEY = "fake/Secret+Key"
REGION = "us-west-2"
KEY = aws.AwsKey(ACCESS_KEY, SECRET_KEY, REGION)
ADAPTOR = aws.AwsAdaptor()
PNG_DATA = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
    },
}
METRICS = {"inputTokenCount": 40, "outputTokenCount": 12, "invocationLatency": 9}


def make_attempt(
    model: str = CLAUDE,
    *,
    stream: bool = False,
    mode: RelayMode = RelayMode.CHAT,
    key: str = "",
    config: dict[str, object] | None = None,
    base_url: str = "",
    headers: dict[str, str] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=7,
        type=ChannelType.AWS_CLAUDE,
        name="bedrock",
        key=key,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(model,),
        model_mapping={},
        config={"ak": ACCESS_KEY, "sk": SECRET_KEY, "region": REGION} if config is None else config,
        system_prompt="",
        other="",
    )
    request = Request(
        method="POST",
        path=mode.upstream_path,
        query_string=b"",
        headers=headers or {},
        body=b"",
        client_ip="127.0.0.1",
        request_id="test-request",
    )
    return Attempt(channel, mode, model, stream, request)


def chat(model: str, *messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": list(messages), **fields}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def build(payload: dict[str, Any], **attempt: Any) -> tuple[Any, dict[str, Any]]:
    body = OpenAIBody(orjson.dumps(payload), dict(payload))
    call = ADAPTOR.build_request(make_attempt(payload["model"], **attempt), body)
    return call, orjson.loads(call.content)


def sent_body(payload: dict[str, Any], **attempt: Any) -> dict[str, Any]:
    return build(payload, **attempt)[1]


# ---------------------------------------------------------------------- event stream


def test_the_empty_message_is_awss_published_encoding() -> None:
    # AWS's event-stream test suite, "empty_message": 16 bytes, both CRCs given.
    frame = bytes.fromhex("000000100000000005c248eb7d98c8ff")
    assert decode_message(frame) == Message({}, b"")
    assert encode_message({}, b"") == frame


def test_the_fakes_encoder_is_what_botocore_decodes() -> None:
    headers = {":event-type": "chunk", "flag": True, "off": False, "n": -7, "raw": b"\x00\r\n"}
    frame = encode_message(headers, b'{"bytes":"e30="}')

    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    (decoded,) = list(buffer)

    assert decoded.headers == headers
    assert decoded.payload == b'{"bytes":"e30="}'
    assert decode_message(frame) == Message(headers, b'{"bytes":"e30="}')


def test_every_header_value_type_is_read() -> None:
    stamp = uuid.UUID("12345678-1234-5678-1234-567812345678")

    def header(name: str, kind: int, value: bytes) -> bytes:
        return bytes([len(name)]) + name.encode() + bytes([kind]) + value

    raw = b"".join(
        [
            header("byte", 2, struct.pack(">b", -2)),
            header("short", 3, struct.pack(">h", 300)),
            header("long", 5, struct.pack(">q", 2**40)),
            header("time", 8, struct.pack(">q", 1_700_000_000_000)),
            header("id", 9, stamp.bytes),
            header("text", 7, struct.pack(">H", 3) + b"abc"),
        ]
    )
    assert parse_headers(raw) == {
        "byte": -2,
        "short": 300,
        "long": 2**40,
        "time": 1_700_000_000_000,
        "id": stamp,
        "text": "abc",
    }
    with pytest.raises(EventStreamError, match="unknown header value type"):
        parse_headers(header("odd", 42, b""))
    with pytest.raises(EventStreamError, match="runs past"):
        parse_headers(header("text", 7, struct.pack(">H", 10) + b"abc"))


TWO_FRAMES = [
    encode_message({":event-type": "chunk", ":message-type": "event"}, b'{"a":1}'),
    encode_message({":event-type": "chunk", ":message-type": "event"}, b"\r\n" * 40),
]


def test_frames_split_at_every_byte_boundary_are_reassembled() -> None:
    stream = b"".join(TWO_FRAMES)
    for cut in range(1, len(stream)):
        decoder = EventStreamDecoder()
        messages = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [m.payload for m in messages] == [b'{"a":1}', b"\r\n" * 40], cut
        assert decoder.pending == 0


def test_byte_by_byte_and_several_frames_per_chunk() -> None:
    stream = b"".join(TWO_FRAMES * 3)
    decoder = EventStreamDecoder()
    one_by_one = [m for i in range(len(stream)) for m in decoder.feed(stream[i : i + 1])]
    assert len(one_by_one) == 6

    packed = EventStreamDecoder().feed(stream)
    assert [m.payload for m in packed] == [m.payload for m in one_by_one]
    assert packed[0].event_type == "chunk"
    assert packed[0].message_type == "event"


def test_a_partial_tail_waits_for_the_rest() -> None:
    decoder = EventStreamDecoder()
    assert decoder.feed(TWO_FRAMES[0][:-1]) == []
    assert decoder.pending == len(TWO_FRAMES[0]) - 1
    assert len(decoder.feed(TWO_FRAMES[0][-1:])) == 1


def corrupt(frame: bytes, position: int) -> bytes:
    return frame[:position] + bytes([frame[position] ^ 0x01]) + frame[position + 1 :]


@pytest.mark.parametrize(
    ("position", "message"),
    [
        (3, "prelude CRC"),  # the total length
        (9, "prelude CRC"),  # the prelude CRC itself
        (20, "message CRC"),  # a header byte
        (-6, "message CRC"),  # the payload
        (-1, "message CRC"),  # the message CRC itself
    ],
)
def test_crc_mismatches_are_errors(position: int, message: str) -> None:
    frame = TWO_FRAMES[0]
    with pytest.raises(EventStreamError, match=message):
        EventStreamDecoder().feed(corrupt(frame, position % len(frame)))


def test_an_impossible_length_fails_before_buffering() -> None:
    prelude = struct.pack(">II", 64 * 1024 * 1024, 0)
    prelude += struct.pack(">I", zlib.crc32(prelude))
    with pytest.raises(EventStreamError, match="out of range"):
        EventStreamDecoder().feed(prelude)


# ---------------------------------------------------------------------- SigV4


EXAMPLE_KEY = aws.AwsKey("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1")
SUITE_SCOPE = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"


@pytest.fixture
def frozen_clock() -> Iterator[None]:
    moment = datetime.datetime(2015, 8, 30, 12, 36, tzinfo=datetime.UTC)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        yield


@pytest.mark.parametrize(
    ("method", "headers", "body", "signed", "signature"),
    [
        # AWS's SigV4 test suite: get-vanilla, post-vanilla, post-x-www-form-urlencoded.
        (
            "GET",
            {},
            b"",
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "POST",
            {},
            b"",
            "host;x-amz-date",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
        (
            "POST",
            {"Content-Type": "application/x-www-form-urlencoded"},
            b"Param1=value1",
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ),
    ],
)
def test_signing_matches_awss_published_test_vectors(
    frozen_clock: None,
    method: str,
    headers: dict[str, str],
    body: bytes,
    signed: str,
    signature: str,
) -> None:
    sent = aws.sign(
        method, "https://example.amazonaws.com/", headers, body, EXAMPLE_KEY, service="service"
    )

    assert sent["X-Amz-Date"] == "20150830T123600Z"
    assert sent["Authorization"] == (
        f"AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders={signed}, Signature={signature}"
    )


def test_requests_are_signed_for_bedrock_in_the_channels_region() -> None:
    call, _ = build(chat(CLAUDE, user("Hi")))
    authorization = call.headers["Authorization"]
    date = call.headers["X-Amz-Date"][:8]
    assert authorization.startswith(
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{date}/{REGION}/bedrock/aws4_request, "
        "SignedHeaders=accept;content-type;host;x-amz-date, Signature="
    )


# ---------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    ("key", "config", "expected"),
    [
        ("", {"ak": "A", "sk": "S", "region": "eu-west-1"}, ("A", "S", "eu-west-1")),
        ("A|S|ap-south-1", {}, ("A", "S", "ap-south-1")),
        (" A | S | ap-south-1 ", {"ak": "", "sk": None}, ("A", "S", "ap-south-1")),
        ("A|S|ap-south-1", {"region": "us-east-2"}, ("A", "S", "us-east-2")),
    ],
)
def test_credentials_come_from_config_fields_or_the_key(
    key: str, config: dict[str, object], expected: tuple[str, str, str]
) -> None:
    assert aws.channel_key(make_attempt(key=key, config=config).channel) == aws.AwsKey(*expected)


@pytest.mark.parametrize(
    ("key", "config"), [("", {}), ("A|S", {}), ("", {"ak": "A", "sk": "S"}), ("A||r", {})]
)
def test_incomplete_credentials_fail_this_channel_only(key: str, config: dict[str, object]) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        build(chat(CLAUDE, user("Hi")), key=key, config=config)
    assert caught.value.retryable
    assert not caught.value.from_upstream
    assert caught.value.error.code == "invalid_channel_config"


# ---------------------------------------------------------------------- models and URLs


@pytest.mark.parametrize(
    ("model", "family", "model_id"),
    [
        (CLAUDE, aws.Family.CLAUDE, CLAUDE_ID),
        (
            "claude-3-5-sonnet-latest",
            aws.Family.CLAUDE,
            "anthropic.claude-3-5-sonnet-20241022-v2:0",
        ),
        ("claude-2.1", aws.Family.CLAUDE, "anthropic.claude-v2:1"),
        ("claude-instant-1.2", aws.Family.CLAUDE, "anthropic.claude-instant-v1"),
        (LLAMA, aws.Family.LLAMA, LLAMA_ID),
        ("llama3-70b-8192", aws.Family.LLAMA, "meta.llama3-70b-instruct-v1:0"),
        # Bedrock ids and cross-region inference profiles pass through.
        (CLAUDE_ID, aws.Family.CLAUDE, CLAUDE_ID),
        (
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            aws.Family.CLAUDE,
            "us.anthropic.claude-3-7-sonnet-20250219-v1:0",
        ),
        (
            "eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
            aws.Family.CLAUDE,
            "eu.anthropic.claude-3-5-sonnet-20240620-v1:0",
        ),
        ("meta.llama3-1-70b-instruct-v1:0", aws.Family.LLAMA, "meta.llama3-1-70b-instruct-v1:0"),
        (
            "us.meta.llama3-2-3b-instruct-v1:0",
            aws.Family.LLAMA,
            "us.meta.llama3-2-3b-instruct-v1:0",
        ),
        (
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
            aws.Family.CLAUDE,
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
        ),
    ],
)
def test_model_ids(model: str, family: aws.Family, model_id: str) -> None:
    assert aws.bedrock_model(model) == (family, model_id)


@pytest.mark.parametrize(
    "model", ["gpt-4o", "amazon.titan-text-express-v1", "meta.llama2-13b-chat-v1", "claude-9"]
)
def test_other_models_are_refused(model: str) -> None:
    with pytest.raises(UpstreamFailure) as caught:
        aws.bedrock_model(model)
    assert caught.value.error.status == 400
    assert model in caught.value.error.message
    assert caught.value.retryable  # another channel type may serve the name


@pytest.mark.parametrize(
    ("stream", "base_url", "url"),
    [
        (False, "", f"https://bedrock-runtime.{REGION}.amazonaws.com/model/{CLAUDE_ID}/invoke"),
        (
            True,
            "",
            f"https://bedrock-runtime.{REGION}.amazonaws.com/model/{CLAUDE_ID}"
            "/invoke-with-response-stream",
        ),
        (False, "http://127.0.0.1:9/", f"http://127.0.0.1:9/model/{CLAUDE_ID}/invoke"),
    ],
)
def test_url_and_headers(stream: bool, base_url: str, url: str) -> None:
    call, _ = build(chat(CLAUDE, user("Hi")), stream=stream, base_url=base_url)

    assert call.method == "POST"
    assert call.url == url
    assert call.headers["Content-Type"] == "application/json"
    if stream:
        assert call.headers["Accept"] == "application/vnd.amazon.eventstream"
        assert call.headers["X-Amzn-Bedrock-Accept"] == "application/json"
    else:
        assert call.headers["Accept"] == "application/json"


def test_a_slash_in_an_arn_stays_encoded() -> None:
    arn = "arn:aws:bedrock:us-east-1:1:application-inference-profile/anthropic.claude-x"
    call, _ = build(chat(arn, user("Hi")))
    assert call.url.endswith(
        "/model/arn:aws:bedrock:us-east-1:1:application-inference-profile%2Fanthropic.claude-x"
        "/invoke"
    )


def test_aws_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.AWS_CLAUDE), aws.AwsAdaptor)


def test_other_modes_and_multipart_are_refused() -> None:
    body = OpenAIBody(b"{}", {"model": CLAUDE, "input": "x"})
    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_request(make_attempt(mode=RelayMode.EMBEDDINGS), body)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")
    with pytest.raises(RelayError) as caught:
        ADAPTOR.build_raw_request(make_attempt(mode=RelayMode.AUDIO_TRANSCRIPTION), b"", "x")
    assert caught.value.status == 400


# ---------------------------------------------------------------------- Claude requests


def test_claude_body_is_anthropics_with_bedrocks_version_and_no_model() -> None:
    sent = sent_body(
        chat(
            CLAUDE,
            {"role": "system", "content": "Be brief."},
            user("Hi"),
            temperature=1.7,
            top_p=0.5,
            top_k=900,
            stop=["END"],
            stream=True,
            stream_options={"include_usage": True},
            user="u-1",
        ),
        stream=True,
    )

    assert sent == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "stop_sequences": ["END"],
        "temperature": 1.0,  # clamped to Bedrock's range
        "top_p": 0.5,
        "top_k": 500,
    }


def test_claude_tools_images_and_the_beta_header() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"}}
    sent = sent_body(
        chat(
            CLAUDE,
            user([{"type": "text", "text": "Weather here?"}, image]),
            tools=[WEATHER_TOOL],
            tool_choice="required",
            max_tokens=50,
        ),
        headers={"anthropic-beta": "token-efficient-tools-2025-02-19, output-128k-2025-02-19"},
    )

    assert sent["max_tokens"] == 50
    assert sent["anthropic_beta"] == ["token-efficient-tools-2025-02-19", "output-128k-2025-02-19"]
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tools"][0]["input_schema"]["properties"] == {"location": {"type": "string"}}
    assert sent["tool_choice"] == {"type": "any"}
    assert sent["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA},
    }


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (
            chat(CLAUDE, user([{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}])),
            "invalid_image_url",
        ),
        (chat(CLAUDE, user("Hi"), n=2), "unsupported_parameter"),
    ],
)
def test_what_claude_on_bedrock_cannot_take_is_a_client_error(
    payload: dict[str, Any], code: str
) -> None:
    with pytest.raises(RelayError) as caught:
        build(payload)
    assert (caught.value.status, caught.value.code) == (400, code)


# ---------------------------------------------------------------------- Llama requests


def test_llama_prompt_follows_the_llama3_chat_template() -> None:
    prompt = aws.llama_prompt(
        [
            {"role": "system", "content": "Your name is Kat."},
            user("What's your name?"),
            {"role": "assistant", "content": "Kat"},
            user([{"type": "text", "text": "And your job?"}, {"type": "text", "text": "Briefly."}]),
        ]
    )

    assert prompt == (
        "<|begin_of_text|>"
        "<|start_header_id|>system<|end_header_id|>\n\nYour name is Kat.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat's your name?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nKat<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd your job?\nBriefly.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_llama_body() -> None:
    sent = sent_body(chat(LLAMA, user(" Hi "), temperature=1.5, top_p=0.8, stream=True))
    assert sent == {
        "prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "max_gen_len": 2048,
        "temperature": 1.0,
        "top_p": 0.8,
    }
    assert sent_body(chat(LLAMA, user("Hi"), max_tokens=100))["max_gen_len"] == 100
    assert sent_body(chat(LLAMA, user("Hi"), max_completion_tokens=9000))["max_gen_len"] == 2048


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (chat(LLAMA, user("Hi"), tools=[WEATHER_TOOL]), "unsupported_tools"),
        (chat(LLAMA, user("Hi"), stop="END"), "unsupported_stop"),
        (chat(LLAMA, user("Hi"), n=3), "unsupported_parameter"),
        (
            chat(
                LLAMA,
                user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]),
            ),
            "unsupported_content",
        ),
        (
            chat(LLAMA, user("Hi"), {"role": "tool", "tool_call_id": "t", "content": "18C"}),
            "unsupported_tools",
        ),
    ],
)
def test_what_llama_on_bedrock_cannot_take_is_a_client_error(
    payload: dict[str, Any], code: str
) -> None:
    with pytest.raises(RelayError) as caught:
        build(payload)
    assert (caught.value.status, caught.value.code) == (400, code)


# ---------------------------------------------------------------------- responses


def translate(model: str, data: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(ADAPTOR.translate_response(make_attempt(model), orjson.dumps(data)))


def test_claude_response_with_a_tool_call() -> None:
    message = {
        "id": "msg_bdrk_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [
            {"type": "text", "text": "Checking."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "get_weather",
                "input": {"location": "Oslo"},
            },
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 30, "output_tokens": 11},
    }

    converted = translate(CLAUDE, message)

    assert converted["id"] == "chatcmpl-msg_bdrk_01"
    assert converted["model"] == CLAUDE
    choice = converted["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Checking."
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location":"Oslo"}'},
        }
    ]
    assert converted["usage"] == {"prompt_tokens": 30, "completion_tokens": 11, "total_tokens": 41}


@pytest.mark.parametrize(("stop_reason", "finish"), [("stop", "stop"), ("length", "length")])
def test_llama_response(stop_reason: str, finish: str) -> None:
    converted = translate(
        LLAMA,
        {
            "generation": "Hi there",
            "prompt_token_count": 15,
            "generation_token_count": 3,
            "stop_reason": stop_reason,
        },
    )

    assert converted["object"] == "chat.completion"
    assert converted["model"] == LLAMA
    assert converted["choices"][0]["message"] == {"role": "assistant", "content": "Hi there"}
    assert converted["choices"][0]["finish_reason"] == finish
    assert converted["usage"] == {"prompt_tokens": 15, "completion_tokens": 3, "total_tokens": 18}


def test_llama_response_without_counts_leaves_usage_to_the_relay() -> None:
    assert "usage" not in translate(LLAMA, {"generation": "Hi", "stop_reason": None})


# ---------------------------------------------------------------------- stream translation


def chunk(event: dict[str, Any]) -> bytes:
    """A chunk frame without the random padding: reproducible bytes."""
    data = base64.b64encode(orjson.dumps(event)).decode()
    headers = {
        ":event-type": "chunk",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    return encode_message(headers, orjson.dumps({"bytes": data}))


def decode_frames(raw: bytes) -> list[Any]:
    frames: list[Any] = []
    for block in raw.split(b"\n\n"):
        if block:
            assert block.startswith(b"data: "), block
            payload = block[6:]
            frames.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return frames


def feed(translator: aws.BedrockStream, stream: bytes, piece: int = 5) -> list[Any]:
    raw = b""
    for start in range(0, len(stream), piece):
        raw += translator.accept_bytes(stream[start : start + piece]) or b""
    return decode_frames(raw)


def claude_stream(translator_model: str = CLAUDE, wants_usage: bool = True) -> aws.BedrockStream:
    events = aws.ClaudeEvents(client_wants_usage=wants_usage, model=translator_model)
    return aws.BedrockStream(events)


def llama_stream(wants_usage: bool = True) -> aws.BedrockStream:
    return aws.BedrockStream(aws.LlamaEvents(client_wants_usage=wants_usage, model=LLAMA))


def claude_events(usage: bool = True, tool: bool = False) -> list[dict[str, Any]]:
    start: dict[str, Any] = {
        "id": "msg_bdrk_s1",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-sonnet-20240620",
        "content": [],
        "stop_reason": None,
    }
    if usage:
        start["usage"] = {"input_tokens": 21, "output_tokens": 1}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
    ]
    if tool:
        head = {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}
        events += [
            {"type": "content_block_start", "index": 1, "content_block": head},
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"location":'},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
            },
            {"type": "content_block_stop", "index": 1},
        ]
    final: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use" if tool else "end_turn", "stop_sequence": None},
    }
    if usage:
        final["usage"] = {"output_tokens": 6}
    events += [final, {"type": "message_stop", "amazon-bedrock-invocationMetrics": METRICS}]
    return events


def deltas(frames: list[Any]) -> list[dict[str, Any]]:
    return [f["choices"][0]["delta"] for f in frames if f != "[DONE]" and f["choices"]]


def test_claude_stream_in_small_pieces_with_anthropics_own_usage() -> None:
    translator = claude_stream()
    frames = feed(translator, b"".join(chunk(e) for e in claude_events()), piece=5)

    assert deltas(frames) == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert {f["id"] for f in frames if f != "[DONE]"} == {"chatcmpl-msg_bdrk_s1"}
    assert {f["model"] for f in frames if f != "[DONE]"} == {CLAUDE}
    assert frames[-3]["choices"][0]["finish_reason"] == "stop"
    # Anthropic's counts win over Bedrock's metrics when both are there.
    usage = {"prompt_tokens": 21, "completion_tokens": 6, "total_tokens": 27}
    assert frames[-2] == {**frames[-2], "choices": [], "usage": usage}
    assert frames[-1] == "[DONE]"
    assert translator.usage == usage
    assert translator.saw_done
    assert translator.upstream_error is None
    assert translator.generated_text == "Hello"
    assert translator.accept_bytes(chunk({"type": "ping"})) is None  # nothing after the end
    assert translator.decoder.pending == 0


def test_claude_stream_without_anthropic_usage_bills_bedrocks_metrics() -> None:
    translator = claude_stream(wants_usage=False)
    frames = feed(translator, b"".join(chunk(e) for e in claude_events(usage=False)))

    assert translator.usage == {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}
    assert not any(f != "[DONE]" and not f["choices"] for f in frames)  # not asked for
    assert frames[-1] == "[DONE]"


def test_claude_stream_with_a_tool_call_all_frames_in_one_chunk() -> None:
    translator = claude_stream(wants_usage=False)
    raw = translator.accept_bytes(b"".join(chunk(e) for e in claude_events(tool=True)))
    frames = decode_frames(raw or b"")

    assert deltas(frames)[3:-1] == [
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        {"tool_calls": [{"index": 0, "function": {"arguments": '{"location":'}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]},
    ]
    assert frames[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_exception_message_becomes_an_error_frame_and_ends_the_stream() -> None:
    translator = claude_stream()
    head = b"".join(chunk(e) for e in claude_events()[:4])
    feed(translator, head)

    frames = feed(translator, exception_message("throttlingException", "Too many tokens."))

    assert frames == [
        {
            "error": {
                "message": "Too many tokens.",
                "type": "throttlingException",
                "param": None,
                "code": None,
            }
        }
    ]
    assert translator.upstream_error == frames[0]["error"]
    assert not translator.saw_done
    assert translator.accept_bytes(chunk(claude_events()[4])) is None


def test_a_corrupt_frame_becomes_an_error_frame() -> None:
    translator = claude_stream()
    frames = feed(translator, corrupt(chunk(claude_events()[0]), 30))

    assert frames[0]["error"]["code"] == "bad_event_stream"
    assert "CRC" in frames[0]["error"]["message"]
    assert translator.upstream_error is not None


def test_other_events_and_undecodable_chunks_are_ignored() -> None:
    translator = claude_stream()
    other = encode_message({":event-type": "initial-response", ":message-type": "event"}, b"{}")
    garbled = encode_message({":event-type": "chunk", ":message-type": "event"}, b'{"bytes":"%%"}')
    assert translator.accept_bytes(other + garbled) is None
    assert translator.upstream_error is None


def llama_chunks(*, counts: bool = True, stop_reason: str = "stop") -> list[dict[str, Any]]:
    pieces = ["Hi", " there", "!"]
    events = [
        {
            "generation": piece,
            "prompt_token_count": (9 if counts else None) if i == 0 else None,
            "generation_token_count": (i + 1) if counts else None,
            "stop_reason": None,
        }
        for i, piece in enumerate(pieces)
    ]
    events.append(
        {
            "generation": "",
            "prompt_token_count": None,
            "generation_token_count": 4 if counts else None,
            "stop_reason": stop_reason,
            "amazon-bedrock-invocationMetrics": METRICS,
        }
    )
    return events


def test_llama_stream() -> None:
    translator = llama_stream()
    frames = feed(translator, b"".join(chunk(e) for e in llama_chunks()), piece=11)

    assert deltas(frames) == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {"content": " there"},
        {"content": "!"},
        {},
    ]
    assert frames[-3]["choices"][0]["finish_reason"] == "stop"
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    assert frames[-2]["usage"] == usage and frames[-2]["choices"] == []
    assert frames[-1] == "[DONE]"
    assert len({f["id"] for f in frames if f != "[DONE]"}) == 1
    assert translator.usage == usage
    assert translator.generated_text == "Hi there!"
    assert translator.saw_done


def test_llama_stream_without_counts_uses_the_metrics_and_maps_length() -> None:
    translator = llama_stream(wants_usage=False)
    frames = feed(
        translator, b"".join(chunk(e) for e in llama_chunks(counts=False, stop_reason="length"))
    )

    assert frames[-2]["choices"][0]["finish_reason"] == "length"
    assert translator.usage == {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52}


def test_line_fed_translation_matches_when_no_cr_precedes_a_newline() -> None:
    # The line interface puts back the b"\n" the relay's splitter removed; frames with
    # newlines inside (this header holds one) survive it as long as no b"\r" precedes one.
    marker = {":event-type": "chunk", ":message-type": "event", "x-note": b"a\nb"}
    events = [*claude_events()]
    stream = b"".join(
        encode_message(marker, orjson.dumps({"bytes": base64.b64encode(orjson.dumps(e)).decode()}))
        for e in events
    )
    assert b"\n" in stream and b"\r\n" not in stream

    by_lines = claude_stream()
    splitter = LineSplitter()
    lines = [*splitter.feed(stream), *splitter.flush()]
    raw = b"".join(by_lines.accept(line) or b"" for line in lines)
    by_bytes = claude_stream()

    assert deltas(decode_frames(raw)) == deltas(feed(by_bytes, stream))
    assert by_lines.saw_done and by_lines.usage == by_bytes.usage


# ---------------------------------------------------------------------- the fake upstream


@pytest.fixture(scope="module")
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION) as fake:
        yield fake


@pytest.fixture
def fake(bedrock: FakeBedrock) -> FakeBedrock:
    bedrock.reset()
    return bedrock


CLAUDE_BODY = {
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 20,
    "messages": [{"role": "user", "content": "Hi"}],
}


def post_signed(
    fake: FakeBedrock,
    body: dict[str, Any],
    *,
    key: aws.AwsKey = KEY,
    model_id: str = CLAUDE_ID,
    action: str = "invoke",
    tamper: bytes | None = None,
) -> httpx.Response:
    url = f"{fake.base_url}/model/{model_id}/{action}"
    content = orjson.dumps(body)
    headers = aws.sign("POST", url, {"Content-Type": "application/json"}, content, key)
    return httpx.post(url, content=tamper if tamper is not None else content, headers=headers)


def aws_error(response: httpx.Response) -> tuple[int, str, str]:
    kind = response.headers["x-amzn-errortype"].split(":", 1)[0]
    return response.status_code, kind, response.json()["message"]


def test_the_fake_accepts_a_request_signed_with_its_key(fake: FakeBedrock) -> None:
    response = post_signed(fake, CLAUDE_BODY)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == fake.reply
    assert fake.last_request.model_id == CLAUDE_ID


@pytest.mark.parametrize(
    ("key", "kind", "message"),
    [
        (
            aws.AwsKey(ACCESS_KEY, "not-the-secret", REGION),
            "InvalidSignatureException",
            SIGNATURE_MISMATCH,
        ),
        (
            aws.AwsKey("AKIDUNKNOWN", SECRET_KEY, REGION),
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            aws.AwsKey(ACCESS_KEY, SECRET_KEY, "eu-west-1"),
            "InvalidSignatureException",
            "Credential should be scoped to a valid region, not 'eu-west-1'.",
        ),
    ],
)
def test_the_fake_checks_signatures_like_aws(
    fake: FakeBedrock, key: aws.AwsKey, kind: str, message: str
) -> None:
    assert aws_error(post_signed(fake, CLAUDE_BODY, key=key)) == (403, kind, message)


def test_the_fake_refuses_tampered_stale_and_unsigned_requests(fake: FakeBedrock) -> None:
    tampered = post_signed(fake, CLAUDE_BODY, tamper=orjson.dumps({**CLAUDE_BODY, "max_tokens": 9}))
    assert aws_error(tampered) == (403, "InvalidSignatureException", SIGNATURE_MISMATCH)

    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=past):
        stale = post_signed(fake, CLAUDE_BODY)
    assert stale.status_code == 403
    assert stale.json()["message"].startswith("Signature expired:")

    unsigned = httpx.post(f"{fake.base_url}/model/{CLAUDE_ID}/invoke", json=CLAUDE_BODY)
    assert aws_error(unsigned) == (
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )


@pytest.mark.parametrize(
    ("model_id", "body", "message"),
    [
        (CLAUDE_ID, {**CLAUDE_BODY, "model": "x"}, "extraneous key [model] is not permitted"),
        (CLAUDE_ID, {**CLAUDE_BODY, "stream": True}, "extraneous key [stream] is not permitted"),
        (
            CLAUDE_ID,
            {k: v for k, v in CLAUDE_BODY.items() if k != "anthropic_version"},
            "required key [anthropic_version]",
        ),
        (
            CLAUDE_ID,
            {**CLAUDE_BODY, "temperature": 1.5},
            "#/temperature: 1.5 is not less or equal to 1",
        ),
        (
            CLAUDE_ID,
            {**CLAUDE_BODY, "messages": [{"role": "user", "content": "a"}] * 2},
            "roles must alternate",
        ),
        (
            LLAMA_ID,
            {"prompt": "Hi", "max_gen_len": 4096},
            "#/max_gen_len: 4096 is not less or equal to 2048",
        ),
        (LLAMA_ID, {"prompt": "Hi", "stop": ["x"]}, "extraneous key [stop]"),
        (
            "amazon.titan-text-express-v1",
            {"inputText": "Hi"},
            "The provided model identifier is invalid.",
        ),
    ],
)
def test_the_fake_validates_bodies_like_bedrock(
    fake: FakeBedrock, model_id: str, body: dict[str, Any], message: str
) -> None:
    status, kind, text = aws_error(post_signed(fake, body, model_id=model_id))
    assert (status, kind) == (400, "ValidationException")
    assert message in text


def test_the_fakes_stream_is_a_valid_event_stream(fake: FakeBedrock) -> None:
    fake.write_mode = "split"
    response = post_signed(fake, CLAUDE_BODY, action="invoke-with-response-stream")

    assert response.headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()  # botocore's decoder, independent of ours
    buffer.add_data(response.content)
    events = []
    for message in buffer:
        assert message.headers[":event-type"] == "chunk"
        events.append(json.loads(base64.b64decode(json.loads(message.payload)["bytes"])))
    assert [e["type"] for e in events][0] == "message_start"
    assert events[-1]["type"] == "message_stop"
    assert events[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == fake.output_tokens


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def bedrock_channel(world: World, fake: FakeBedrock) -> Channel:
    return make_channel(
        type=ChannelType.AWS_CLAUDE,
        base_url=fake.base_url,
        key=f"{ACCESS_KEY}|{SECRET_KEY}|{REGION}",
        models=f"{CLAUDE},{LLAMA},gpt-4-bedrock",
        config=json.dumps({"region": REGION}),
    )


def expected_quota(model: str, prompt: int, completion: int) -> int:
    ratio = pricing.model_ratio(model, ChannelType.AWS_CLAUDE)
    completion_ratio = pricing.completion_ratio(model, ChannelType.AWS_CLAUDE)
    return pricing.text_quota(prompt, completion, ratio, completion_ratio)


def assert_logged(world: World, channel: Channel, model: str, prompt: int, completion: int) -> None:
    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens) == (prompt, completion)
    assert log.model_name == model
    assert log.channel_id == channel.pk
    assert log.quota == expected_quota(model, prompt, completion) == world.user.used_quota


def test_claude_chat_through_the_relay(
    world: World, bedrock_channel: Channel, fake: FakeBedrock
) -> None:
    payload = chat(CLAUDE, {"role": "system", "content": "Be kind."}, user("Hello there"))

    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    sent = fake.last_request
    assert sent.path == f"/model/{CLAUDE_ID}/invoke"
    assert sent.json == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 4096,
        "system": "Be kind.",
        "messages": [{"role": "user", "content": "Hello there"}],
    }
    assert f"Credential={ACCESS_KEY}/" in sent.headers["authorization"]
    body = result.json()
    assert body["model"] == CLAUDE
    assert body["choices"][0]["message"]["content"] == fake.reply
    assert body["usage"] == {"prompt_tokens": 17, "completion_tokens": 8, "total_tokens": 25}
    assert world.upstream.requests == []
    assert_logged(world, bedrock_channel, CLAUDE, 17, 8)


@pytest.mark.parametrize("write_mode", ["frame", "split", "packed"])
def test_claude_stream_through_the_relay(
    world: World, bedrock_channel: Channel, fake: FakeBedrock, write_mode: str
) -> None:
    fake.write_mode = write_mode
    payload = chat(CLAUDE, user("Hi"), stream=True, stream_options={"include_usage": True})

    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    assert result.headers["content-type"] == "text/event-stream"
    assert fake.last_request.path == f"/model/{CLAUDE_ID}/invoke-with-response-stream"
    events = result.events
    text = "".join(
        e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"]
    )
    assert text == fake.reply
    assert events[-2]["usage"] == {"prompt_tokens": 17, "completion_tokens": 8, "total_tokens": 25}
    assert events[-1] == "[DONE]"
    assert_logged(world, bedrock_channel, CLAUDE, 17, 8)


def test_claude_stream_without_anthropic_usage_is_billed_from_metrics(
    world: World, bedrock_channel: Channel, fake: FakeBedrock
) -> None:
    fake.scenario = "no_usage"
    fake.input_tokens, fake.output_tokens = 30, 5
    try:
        result = world.client.post("/v1/chat/completions", chat(CLAUDE, user("Hi"), stream=True))
    finally:
        fake.input_tokens, fake.output_tokens = 17, 8

    assert result.status == 200, result.body
    assert result.events[-1] == "[DONE]"
    assert_logged(world, bedrock_channel, CLAUDE, 30, 5)


def test_claude_tool_call_through_the_relay(
    world: World, bedrock_channel: Channel, fake: FakeBedrock
) -> None:
    result = world.client.post(
        "/v1/chat/completions", chat(CLAUDE, user("Weather in Paris?"), tools=[WEATHER_TOOL])
    )

    assert result.status == 200, result.body
    message = result.json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"location":"Paris"}',
    }
    assert result.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_llama_chat_through_the_relay(
    world: World, bedrock_channel: Channel, fake: FakeBedrock
) -> None:
    result = world.client.post("/v1/chat/completions", chat(LLAMA, user("Hi"), max_tokens=64))

    assert result.status == 200, result.body
    sent = fake.last_request
    assert sent.path == f"/model/{LLAMA_ID}/invoke"
    assert sent.json is not None
    assert sent.json["max_gen_len"] == 64
    assert sent.json["prompt"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    body = result.json()
    assert body["choices"][0]["message"]["content"] == fake.reply
    assert body["usage"] == {"prompt_tokens": 17, "completion_tokens": 8, "total_tokens": 25}
    assert_logged(world, bedrock_channel, LLAMA, 17, 8)


def test_llama_stream_through_the_relay(
    world: World, bedrock_channel: Channel, fake: FakeBedrock
) -> None:
    fake.write_mode = "split"
    result = world.client.post("/v1/chat/completions", chat(LLAMA, user("Hi"), stream=True))

    assert result.status == 200, result.body
    assert fake.last_request.path == f"/model/{LLAMA_ID}/invoke-with-response-stream"
    events = result.events
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == fake.reply
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert events[-1] == "[DONE]"
    assert_logged(world, bedrock_channel, LLAMA, 17, 8)


@pytest.mark.parametrize(
    ("scenario", "status", "message"),
    [
        ("error_400", 400, "Input is too long for requested model."),
        ("error_403", 403, "You don't have access to the model with the specified model ID."),
        ("error_429", 429, "Too many requests, please wait before trying again."),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_aws_errors_keep_their_status_and_message(
    world: World,
    bedrock_channel: Channel,
    fake: FakeBedrock,
    scenario: str,
    status: int,
    message: str,
    stream: bool,
) -> None:
    fake.scenario = scenario

    result = world.client.post("/v1/chat/completions", chat(CLAUDE, user("Hi"), stream=stream))

    assert result.status == status
    error = result.json()["error"]
    expected = f"{SATURATED_MESSAGE}：{message}" if status == 429 else message
    assert error["message"].startswith(expected)  # then One API's "(request id: ...)"
    assert error["type"] == "upstream_error"
    world.refresh()
    assert world.user.used_quota == 0


def test_a_wrong_secret_is_awss_signature_error(world: World, fake: FakeBedrock) -> None:
    make_channel(
        type=ChannelType.AWS_CLAUDE,
        base_url=fake.base_url,
        key="unused",
        models=CLAUDE,
        config=json.dumps({"ak": ACCESS_KEY, "sk": "wrong-secret", "region": REGION}),
    )

    result = world.client.post("/v1/chat/completions", chat(CLAUDE, user("Hi")))

    assert result.status == 403
    assert result.json()["error"]["message"].startswith(SIGNATURE_MISMATCH)


def test_a_mid_stream_exception_reaches_the_client(
    world: World, bedrock_channel: Channel, fake: FakeBedrock
) -> None:
    fake.scenario = "stream_exception"

    result = world.client.post("/v1/chat/completions", chat(CLAUDE, user("Hi"), stream=True))

    assert result.status == 200
    events = result.events
    assert events[-1] == {
        "error": {
            "message": "Too many tokens, please wait.",
            "type": "throttlingException",
            "param": None,
            "code": None,
        }
    }
    assert "[DONE]" not in events


def test_a_model_bedrock_cannot_serve_is_refused(world: World, bedrock_channel: Channel) -> None:
    result = world.client.post("/v1/chat/completions", chat("gpt-4-bedrock", user("Hi")))

    assert result.status == 400
    assert "not supported by channel type AWS" in result.json()["error"]["message"]
