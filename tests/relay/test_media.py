from __future__ import annotations

import email.parser
import email.policy
import json
import math
from typing import Any

import httpx
import orjson
import pytest

from billing.models import Log
from channels_mgmt.models import Channel
from relay import multipart
from relay.media import cue_text
from tests.factories import make_channel
from tests.fakes.openai_upstream import TINY_PNG
from tests.relay.conftest import World
from tests.relay_harness import Result

pytestmark = pytest.mark.django_db

USER_QUOTA = 10_000_000
KEY_QUOTA = 5_000_000
MEDIA_MODELS = "dall-e-2,dall-e-3,tts-1,whisper-1"
# Bytes that trip naive multipart code: line breaks, dashes, NULs, a fake boundary line.
AWKWARD_BYTES = TINY_PNG + b"\r\n--\r\n\r\n\x00\xff--boundary\r\n" + bytes(range(256)) * 8
TRANSCRIPT = "The quick brown fox jumps over the lazy dog."
TRANSCRIPT_TOKENS = 10  # cl100k_base
WHISPER_RATIO = 15


@pytest.fixture
def media(world: World) -> Channel:
    """A channel for the image and audio models (the world's channel serves text only)."""
    return make_channel(base_url=world.upstream.base_url, models=MEDIA_MODELS)


# --- helpers ----------------------------------------------------------------------------------


def form_body(fields: dict[str, str], files: dict[str, Any]) -> tuple[bytes, str]:
    """A multipart body as httpx (the openai SDK's HTTP client) encodes it."""
    request = httpx.Request("POST", "http://client.invalid/", data=fields, files=files)
    return request.read(), request.headers["content-type"]


def post_form(world: World, path: str, fields: dict[str, str], files: dict[str, Any]) -> Result:
    body, content_type = form_body(fields, files)
    return world.client.request("POST", path, body=body, headers={"content-type": content_type})


def stdlib_parts(content_type: str, body: bytes) -> list[tuple[str, str | None, str, bytes]]:
    """(name, filename, content type, content) of each part, read by the stdlib's parser."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    assert message.is_multipart()
    return [
        (
            str(part.get_param("name", header="content-disposition")),
            part.get_filename(),
            part.get_content_type(),
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    ]


def assert_settled(world: World) -> None:
    """No reservation is left: the ledger's balances are exactly the database's."""
    world.refresh()
    ledger = world.runtime.ledger
    assert ledger.user_available(world.user.id) == world.user.quota
    assert ledger.key_available(world.key.id) == world.key.remain_quota


def assert_charged(world: World, channel: Channel, quota: int) -> Log:
    assert_settled(world)
    channel.refresh_from_db()
    assert world.user.quota == USER_QUOTA - quota
    assert world.user.used_quota == quota
    assert world.key.remain_quota == KEY_QUOTA - quota
    assert world.key.used_quota == quota
    assert channel.used_quota == quota
    log = Log.objects.get()
    assert log.quota == quota
    assert log.channel_id == channel.id
    return log


def assert_nothing_charged(world: World) -> None:
    assert_settled(world)
    assert world.user.quota == USER_QUOTA
    assert world.key.remain_quota == KEY_QUOTA
    assert not Log.objects.exists()


def error_of(result: Result) -> dict[str, Any]:
    error = result.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- image generation -------------------------------------------------------------------------


def test_image_generation_is_relayed_and_billed_per_image(world: World, media: Channel) -> None:
    payload = {"model": "dall-e-2", "prompt": "a red fox", "n": 2, "size": "512x512"}
    raw = orjson.dumps(payload)
    result = world.client.request("POST", "/v1/images/generations", body=raw)

    assert result.status == 200, result.body
    assert result.headers["content-type"] == "application/json"
    assert len(result.json()["data"]) == 2
    sent = world.upstream.last_request
    assert sent.path == "/v1/images/generations"
    assert sent.body == raw  # nothing to change: the client's bytes go upstream
    assert sent.headers["authorization"] == "Bearer sk-upstream"
    # dall-e-2 has ratio 10 and 512x512 costs 1.125: 11250 per image.
    log = assert_charged(world, media, 22_500)
    assert log.model_name == "dall-e-2"
    assert (log.prompt_tokens, log.completion_tokens) == (0, 0)
    assert log.request_id == result.headers["x-oneapi-request-id"]


@pytest.mark.parametrize(
    ("size", "quality", "quota"),
    [
        ("1024x1024", "hd", 40_000),  # 20 × 1 × 2
        ("1792x1024", "hd", 60_000),  # 20 × 2 × 1.5
        ("1792x1024", "standard", 40_000),  # 20 × 2
        ("1024x1024", "", 20_000),
    ],
)
def test_dall_e_3_price_depends_on_size_and_quality(
    world: World, media: Channel, size: str, quality: str, quota: int
) -> None:
    payload = {"model": "dall-e-3", "prompt": "a lighthouse", "size": size}
    if quality:
        payload["quality"] = quality
    result = world.client.post("/v1/images/generations", payload)

    assert result.status == 200, result.body
    assert_charged(world, media, quota)


def test_image_generation_defaults_to_dall_e_2_and_one_square_image(
    world: World, media: Channel
) -> None:
    result = world.client.post("/images/generations", {"prompt": "a tree"})  # bare path too

    assert result.status == 200, result.body
    assert len(result.json()["data"]) == 1
    log = assert_charged(world, media, 12_500)  # 10 × 1.25 (1024x1024) × 1000
    assert log.model_name == "dall-e-2"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"model": "dall-e-2", "prompt": "x", "size": "1792x1024"}, "size_not_supported"),
        ({"model": "dall-e-3", "prompt": "x", "size": "256x256"}, "size_not_supported"),
        ({"model": "dall-e-3", "prompt": "x", "n": 2}, "n_not_within_range"),
        ({"model": "dall-e-2", "prompt": "x", "n": 11}, "n_not_within_range"),
        ({"model": "dall-e-2", "prompt": "x", "n": -1}, "n_not_within_range"),
        ({"model": "dall-e-2", "prompt": "x", "n": "two"}, "invalid_value"),
        ({"model": "dall-e-2"}, "prompt_missing"),
        ({"model": "dall-e-2", "prompt": ""}, "prompt_missing"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt_too_long"),
        ({"model": "dall-e-3", "prompt": "x" * 4001}, "prompt_too_long"),
    ],
)
def test_invalid_image_requests_are_refused_before_any_charge(
    world: World, media: Channel, payload: dict[str, Any], code: str
) -> None:
    result = world.client.post("/v1/images/generations", payload)

    assert result.status == 400, result.body
    error = error_of(result)
    assert error["code"] == code
    assert error["type"] == "one_api_error"
    assert world.upstream.requests == []
    assert_nothing_charged(world)


def test_largest_allowed_image_request_passes(world: World, media: Channel) -> None:
    payload = {"model": "dall-e-2", "prompt": "x" * 1000, "n": 10, "size": "256x256"}
    result = world.client.post("/v1/images/generations", payload)

    assert result.status == 200, result.body
    assert_charged(world, media, 100_000)


# --- image edits and variations (multipart) ---------------------------------------------------


def test_image_edit_multipart_goes_upstream_byte_for_byte(world: World, media: Channel) -> None:
    fields = {"model": "dall-e-2", "prompt": "add a hat", "n": "2", "size": "256x256"}
    files = {
        "image": ("photo.png", AWKWARD_BYTES, "image/png"),
        "mask": ("mask.png", TINY_PNG, "image/png"),
    }
    body, content_type = form_body(fields, files)
    result = world.client.request(
        "POST", "/v1/images/edits", body=body, headers={"content-type": content_type}
    )

    assert result.status == 200, result.body
    assert len(result.json()["data"]) == 2
    sent = world.upstream.last_request
    assert sent.path == "/v1/images/edits"
    assert sent.body == body
    assert sent.headers["content-type"] == content_type
    assert sent.files == {"image": ("photo.png", AWKWARD_BYTES), "mask": ("mask.png", TINY_PNG)}
    assert sent.form == fields
    log = assert_charged(world, media, 20_000)  # 10 × 1 (256x256) × 1000 × 2
    assert (log.prompt_tokens, log.completion_tokens) == (0, 0)


def test_image_variation_needs_no_prompt_and_is_billed(world: World, media: Channel) -> None:
    fields = {"model": "dall-e-2", "n": "3", "size": "512x512", "response_format": "b64_json"}
    files = {"image": ("in.png", AWKWARD_BYTES, "image/png")}
    result = post_form(world, "/v1/images/variations", fields, files)

    assert result.status == 200, result.body
    data = result.json()["data"]
    assert len(data) == 3 and all(item["b64_json"] for item in data)
    sent = world.upstream.last_request
    assert sent.path == "/v1/images/variations"
    assert sent.files == {"image": ("in.png", AWKWARD_BYTES)}
    assert_charged(world, media, 33_750)  # 10 × 1.125 × 1000 × 3


def test_image_edit_validates_form_fields(world: World, media: Channel) -> None:
    fields = {"model": "dall-e-2", "prompt": "p", "size": "1024x1792"}
    result = post_form(world, "/v1/images/edits", fields, {"image": ("a.png", TINY_PNG)})

    assert result.status == 400
    assert error_of(result)["code"] == "size_not_supported"
    assert world.upstream.requests == []
    assert_nothing_charged(world)


def test_model_mapping_rewrites_only_the_model_field(world: World) -> None:
    channel = make_channel(
        base_url=world.upstream.base_url,
        models="dall-e-2",
        model_mapping=json.dumps({"dall-e-2": "dall-e-3"}),
    )
    fields = {"prompt": "a hat", "model": "dall-e-2", "size": "256x256"}
    files = {
        "image": ('фото "1".png', AWKWARD_BYTES, "image/png"),
        "mask": ("mask.bin", b"\x00\r\n\x01", "application/octet-stream"),
    }
    body, content_type = form_body(fields, files)
    result = world.client.request(
        "POST", "/v1/images/edits", body=body, headers={"content-type": content_type}
    )

    assert result.status == 200, result.body
    sent = world.upstream.last_request
    assert sent.headers["content-type"] != content_type  # a fresh boundary
    client_parts = stdlib_parts(content_type, body)
    upstream_parts = stdlib_parts(sent.headers["content-type"], sent.body)
    expected = [
        (name, filename, kind, b"dall-e-3" if name == "model" else data)
        for name, filename, kind, data in client_parts
    ]
    assert upstream_parts == expected
    # The filename's header goes out as the client wrote it (UTF-8, HTML5's %22 for quotes).
    assert 'filename="фото %221%22.png"'.encode() in sent.body
    # The mapped model's ratio (dall-e-3: 20), the requested size's price (dall-e-2 256x256: 1).
    log = assert_charged(world, channel, 20_000)
    assert log.model_name == "dall-e-3"


def test_mapping_adds_the_model_field_when_the_client_left_it_out(world: World) -> None:
    channel = make_channel(
        base_url=world.upstream.base_url,
        models="whisper-1",
        model_mapping=json.dumps({"whisper-1": "whisper-large-v3"}),
    )
    world.upstream.transcript = TRANSCRIPT
    files = {"file": ("speech.mp3", AWKWARD_BYTES, "audio/mpeg")}
    result = post_form(world, "/v1/audio/transcriptions", {}, files)  # whisper-1 by default

    assert result.status == 200, result.body
    sent = world.upstream.last_request
    assert sent.form == {"model": "whisper-large-v3"}
    assert sent.files == {"file": ("speech.mp3", AWKWARD_BYTES)}
    # A model without a configured ratio is priced at One API's fallback ratio 30.
    log = assert_charged(world, channel, TRANSCRIPT_TOKENS * 30)
    assert log.model_name == "whisper-large-v3"


# --- speech -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("audio_format", "content_type"), [("mp3", "audio/mpeg"), ("opus", "audio/opus")]
)
def test_speech_returns_upstream_audio_billed_by_characters(
    world: World, media: Channel, audio_format: str, content_type: str
) -> None:
    text = "Grüße aus Köln"  # 14 characters, 17 bytes: characters are billed
    payload = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": audio_format}
    result = world.client.post("/v1/audio/speech", payload)

    assert result.status == 200, result.body
    assert result.headers["content-type"] == content_type
    assert result.body == world.upstream.speech_audio
    assert world.upstream.last_request.json == payload
    log = assert_charged(world, media, math.ceil(14 * 7.5))  # tts-1: ratio 7.5
    assert log.model_name == "tts-1"
    assert (log.prompt_tokens, log.completion_tokens) == (0, 0)


def test_speech_streams_large_audio_in_chunks(world: World, media: Channel) -> None:
    world.upstream.speech_audio = bytes(range(256)) * 8192  # 2 MiB
    result = world.client.post("/audio/speech", {"model": "tts-1", "input": "hi", "voice": "echo"})

    assert result.status == 200
    assert result.body == world.upstream.speech_audio
    assert len(result.frames) > 1  # relayed as it arrived, not buffered whole
    assert_charged(world, media, 15)


def test_speech_client_disconnect_still_settles_the_full_price(
    world: World, media: Channel
) -> None:
    world.upstream.speech_audio = bytes(range(256)) * 65536  # 16 MiB
    payload = {"model": "tts-1", "input": "a" * 100, "voice": "alloy"}
    result = world.client.post("/v1/audio/speech", payload, disconnect_after_frames=1)

    assert result.status == 200
    assert 0 < len(result.body) < len(world.upstream.speech_audio)
    assert_charged(world, media, 750)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"model": "tts-1", "voice": "alloy"}, "input_missing"),
        ({"model": "tts-1", "input": "", "voice": "alloy"}, "input_missing"),
        ({"model": "tts-1", "input": ["a"], "voice": "alloy"}, "invalid_value"),
        ({"model": "tts-1", "input": "é" * 4097, "voice": "alloy"}, "text_too_long"),
        ({"input": "hello", "voice": "alloy"}, "model_missing"),
    ],
)
def test_invalid_speech_requests_are_refused(
    world: World, media: Channel, payload: dict[str, Any], code: str
) -> None:
    result = world.client.post("/v1/audio/speech", payload)

    assert result.status == 400
    assert error_of(result)["code"] == code
    assert world.upstream.requests == []
    assert_nothing_charged(world)


def test_speech_at_the_length_limit_passes(world: World, media: Channel) -> None:
    payload = {"model": "tts-1", "input": "é" * 4096, "voice": "alloy"}
    result = world.client.post("/v1/audio/speech", payload)

    assert result.status == 200
    assert_charged(world, media, 30_720)


# --- transcriptions and translations ----------------------------------------------------------


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_transcription_is_billed_by_transcript_tokens_times_ratio(
    world: World, media: Channel, response_format: str
) -> None:
    world.upstream.transcript = TRANSCRIPT
    fields = {"model": "whisper-1", "response_format": response_format}
    files = {"file": ("talk.mp3", AWKWARD_BYTES, "audio/mpeg")}
    result = post_form(world, "/v1/audio/transcriptions", fields, files)

    assert result.status == 200, result.body
    sent = world.upstream.last_request
    assert sent.path == "/v1/audio/transcriptions"
    assert sent.files == {"file": ("talk.mp3", AWKWARD_BYTES)}
    if response_format in ("json", "verbose_json"):
        assert result.headers["content-type"] == "application/json"
        assert result.json()["text"] == TRANSCRIPT
    else:
        assert result.headers["content-type"] == "text/plain; charset=utf-8"
        assert TRANSCRIPT in result.body.decode()
    if response_format == "srt":
        assert result.body.startswith(b"1\n00:00:00,000 --> ")
    if response_format == "vtt":
        assert result.body.startswith(b"WEBVTT\n")
    log = assert_charged(world, media, TRANSCRIPT_TOKENS * WHISPER_RATIO)
    assert log.model_name == "whisper-1"
    assert (log.prompt_tokens, log.completion_tokens) == (TRANSCRIPT_TOKENS, 0)


def test_translation_is_relayed_and_billed(world: World, media: Channel) -> None:
    world.upstream.transcript = TRANSCRIPT
    fields = {"model": "whisper-1", "response_format": "verbose_json"}
    result = post_form(world, "/audio/translations", fields, {"file": ("a.wav", TINY_PNG)})

    assert result.status == 200, result.body
    assert result.json()["task"] == "translate"
    assert world.upstream.last_request.path == "/v1/audio/translations"
    assert_charged(world, media, TRANSCRIPT_TOKENS * WHISPER_RATIO)


def test_empty_transcript_costs_nothing_but_is_logged(world: World, media: Channel) -> None:
    world.upstream.transcript = ""
    result = post_form(
        world, "/v1/audio/transcriptions", {"model": "whisper-1"}, {"file": ("a.mp3", b"x")}
    )

    assert result.status == 200
    log = assert_charged(world, media, 0)
    assert log.prompt_tokens == 0


def test_srt_and_vtt_cues_keep_every_spoken_line() -> None:
    srt = (
        "1\r\n00:00:00,000 --> 00:00:01,500\r\nFirst line\r\nsecond line\r\n\r\n"
        "2\r\n00:00:01,500 --> 00:00:03,000\r\nThird\r\n"
    )
    vtt = (
        "WEBVTT - a title\n\nNOTE a comment\nspanning lines\n\n"
        "intro\n00:00.000 --> 00:01.500 align:start\nFirst line\nsecond line\n\n"
        "00:01.500 --> 00:03.000\nThird\n\n"
    )
    assert cue_text(srt) == "First line\nsecond line\nThird"
    assert cue_text(vtt) == "First line\nsecond line\nThird"


# --- failures ---------------------------------------------------------------------------------


def _image_generation(world: World) -> Result:
    return world.client.post("/v1/images/generations", {"prompt": "x", "model": "dall-e-3"})


def _image_edit(world: World) -> Result:
    fields = {"prompt": "x", "model": "dall-e-2"}
    return post_form(world, "/v1/images/edits", fields, {"image": ("a.png", TINY_PNG)})


def _speech(world: World) -> Result:
    return world.client.post("/v1/audio/speech", {"model": "tts-1", "input": "hi", "voice": "x"})


def _transcription(world: World) -> Result:
    return post_form(
        world, "/v1/audio/transcriptions", {"model": "whisper-1"}, {"file": ("a", b"1")}
    )


@pytest.mark.parametrize("send", [_image_generation, _image_edit, _speech, _transcription])
@pytest.mark.parametrize(("scenario", "status"), [("error_500", 500), ("error_400", 400)])
def test_upstream_error_releases_the_reservation(
    world: World, media: Channel, send: Any, scenario: str, status: int
) -> None:
    world.upstream.scenario = scenario
    result = send(world)

    assert result.status == status
    assert error_of(result)["message"]
    assert len(world.upstream.requests) == 1
    assert_nothing_charged(world)


def test_unreachable_upstream_releases_the_reservation(world: World) -> None:
    make_channel(base_url="http://127.0.0.1:9", models="dall-e-2")
    result = world.client.post("/v1/images/generations", {"prompt": "x"})

    assert result.status == 500
    assert error_of(result)["code"] == "do_request_failed"
    assert_nothing_charged(world)


def test_reservation_is_refused_when_the_key_cannot_pay(world: World, media: Channel) -> None:
    world.key.remain_quota = 30_000
    world.key.save()
    payload = {"model": "dall-e-3", "prompt": "x", "quality": "hd", "size": "1792x1024"}
    result = world.client.post("/v1/images/generations", payload)  # costs 60000

    assert result.status == 403
    assert world.upstream.requests == []
    world.refresh()
    assert world.runtime.ledger.key_available(world.key.id) == world.key.remain_quota == 30_000


# --- malformed bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/v1/images/generations", b"{not json", "application/json"),
        ("/v1/images/generations", b"[1, 2]", "application/json"),
        ("/v1/images/variations", b'{"model": "dall-e-2"}', "application/json"),
        ("/v1/audio/transcriptions", b'{"model": "whisper-1"}', "application/json"),
        ("/v1/audio/speech", b"--x\r\n", "multipart/form-data; boundary=x"),
        (
            "/v1/images/edits",
            b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1',
            "multipart/form-data; boundary=x",
        ),
        ("/v1/audio/transcriptions", b"no boundary here", "multipart/form-data; boundary=x"),
        ("/v1/audio/translations", b"--x--\r\n", "multipart/form-data"),
    ],
)
def test_malformed_bodies_are_refused(
    world: World, media: Channel, path: str, body: bytes, content_type: str
) -> None:
    result = world.client.request("POST", path, body=body, headers={"content-type": content_type})

    assert result.status == 400
    assert error_of(result)["code"] == "invalid_request_body"
    assert world.upstream.requests == []
    assert_nothing_charged(world)


def test_key_model_whitelist_applies(world: World, media: Channel) -> None:
    world.key.models = "gpt-3.5-turbo"
    world.key.save()
    result = world.client.post("/v1/images/generations", {"prompt": "x"})

    assert result.status == 403
    assert "dall-e-2" in error_of(result)["message"]


# --- the multipart codec ----------------------------------------------------------------------


def test_multipart_parse_reads_fields_files_and_odd_headers() -> None:
    body = (
        b"preamble to ignore\r\n"
        b"--b\r\n"
        b'Content-Disposition: form-data; name="model"\r\n\r\n'
        b"whisper-1\r\n"
        b"--b\r\n"
        b'content-disposition: form-data; name="a \\"quoted\\" name"\r\n\r\n'
        b"\r\n"
        b"--b\r\n"
        b'Content-Disposition: form-data; name=file; filename="plain.txt"; '
        b"filename*=UTF-8''%C3%A9t%C3%A9.mp3\r\n"
        b"Content-Type: audio/mpeg\r\n\r\n" + AWKWARD_BYTES + b"\r\n"
        b"--b--\r\nepilogue"
    )
    form = multipart.parse_form(body, 'multipart/form-data; charset=utf-8; boundary="b"')

    assert [part.name for part in form.parts] == ["model", 'a "quoted" name', "file"]
    assert form.fields() == {"model": "whisper-1", 'a "quoted" name': ""}
    file = form.parts[2]
    assert (file.filename, file.content_type, file.data) == ("été.mp3", "audio/mpeg", AWKWARD_BYTES)


def test_multipart_reencoding_changes_one_field_and_keeps_the_rest_exact() -> None:
    files = {
        "image": ('a\\b "c".png', AWKWARD_BYTES, "image/png"),
        "image[]": ("second.webp", b"RIFF\r\n--", "image/webp"),
    }
    body, content_type = form_body({"model": "dall-e-2", "n": "1", "model2": "keep"}, files)
    form = multipart.parse_form(body, content_type)

    unchanged, unchanged_type = form.encode()
    assert stdlib_parts(unchanged_type, unchanged) == stdlib_parts(content_type, body)
    assert unchanged_type != content_type

    new_body, new_type = form.with_value("model", "gpt-image-1").encode()
    reparsed = multipart.parse_form(new_body, new_type)
    assert reparsed.value("model") == "gpt-image-1"
    assert [(p.name, p.filename, p.data) for p in reparsed.parts] == [
        (p.name, p.filename, b"gpt-image-1" if p.name == "model" else p.data) for p in form.parts
    ]
    assert stdlib_parts(new_type, new_body)[2] == ("model2", None, "text/plain", b"keep")


def test_multipart_with_value_appends_a_missing_field() -> None:
    body, content_type = form_body({}, {"file": ("a.mp3", b"123", "audio/mpeg")})
    form = multipart.parse_form(body, content_type).with_value("model", 'x"y')

    new_body, new_type = form.encode()
    assert stdlib_parts(new_type, new_body) == [
        ("file", "a.mp3", "audio/mpeg", b"123"),
        ("model", None, "text/plain", b'x"y'),
    ]
    assert multipart.parse_form(new_body, new_type).value("model") == 'x"y'


def test_multipart_boundary_avoids_part_contents() -> None:
    part = multipart.Part("f", b"--oneapi-" * 100, filename="f.bin")
    body, content_type = multipart.Form((part,)).encode()

    boundary = content_type.split("boundary=", 1)[1]
    assert body.count(boundary.encode()) == 2
    assert multipart.parse_form(body, content_type).parts[0].data == part.data


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1",
            "multipart/form-data; boundary=b",
        ),
        (
            b"--b\r\nContent-Disposition: form-data\r\n\r\n1\r\n--b--",
            "multipart/form-data; boundary=b",
        ),
        (
            b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\n1\r\n--b--",
            "multipart/form-data; boundary=b",
        ),
        (b"--b\r\nno header block\r\n--b--", "multipart/form-data; boundary=b"),
        (b"--bX\r\n\r\n--b--", "multipart/form-data; boundary=b"),
        (b"--b--", "multipart/form-data"),
        (b"--b--", "multipart/mixed; boundary=b"),
        (b"", "multipart/form-data; boundary=b"),
    ],
)
def test_multipart_rejects_malformed_bodies(body: bytes, content_type: str) -> None:
    with pytest.raises(multipart.MultipartError):
        multipart.parse_form(body, content_type)
