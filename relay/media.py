"""The image and audio relays (facts §3.7), on the dispatch core the text relay uses.

Images are priced per picture, speech by the characters of its input and transcripts by
their tokens. Unlike One API, every price is reserved before the upstream is called (for
transcripts, One API's pre-consume), then settled when the upstream has answered or
released when it failed; and the model and group ratios apply to transcripts too.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from billing import pricing
from billing.ratio_defaults import (
    IMAGE_GENERATION_AMOUNTS,
    IMAGE_PROMPT_LENGTH_LIMITS,
    IMAGE_SIZE_RATIOS,
)
from channels_mgmt.selection import ChannelInfo
from relay import auth, multipart, usage
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, UpstreamRequest
from relay.caller import Caller, authenticate
from relay.dispatch import (
    Charge,
    channel_adaptor,
    price,
    read_body,
    reserve,
    run_attempts,
)
from relay.errors import RelayError
from relay.http import Request, Response, StreamResponse
from relay.modes import RelayMode
from relay.text import parse_result

DEFAULT_IMAGE_SIZE = "1024x1024"
MAX_SPEECH_INPUT = 4096  # characters, as OpenAI limits `input`
MULTIPART = "multipart/form-data"

# The body encodings each endpoint takes: OpenAI's, plus JSON image edits (which OpenAI
# accepts for its gpt-image models).
JSON, FORM = "json", "multipart"
ENCODINGS: dict[RelayMode, frozenset[str]] = {
    RelayMode.IMAGES_GENERATIONS: frozenset({JSON}),
    RelayMode.IMAGES_EDITS: frozenset({JSON, FORM}),
    RelayMode.IMAGES_VARIATIONS: frozenset({FORM}),
    RelayMode.AUDIO_SPEECH: frozenset({JSON}),
    RelayMode.AUDIO_TRANSCRIPTION: frozenset({FORM}),
    RelayMode.AUDIO_TRANSLATION: frozenset({FORM}),
}
PROMPT_REQUIRED = frozenset({RelayMode.IMAGES_GENERATIONS, RelayMode.IMAGES_EDITS})


# --- the client's body ---------------------------------------------------------------------


def bad_request(message: str, code: str, param: str | None = None) -> RelayError:
    return RelayError(400, message, code=code, param=param)


@dataclass(frozen=True)
class ClientBody:
    """The request body in the client's encoding, with its plain fields read out."""

    raw: bytes
    content_type: str  # the header as sent: a multipart one carries the boundary
    fields: dict[str, Any]
    form: multipart.Form | None  # set for multipart bodies

    def upstream_request(
        self, adaptor: Adaptor, attempt: Attempt, client_model: str
    ) -> UpstreamRequest:
        """The client's bytes as they came, unless the channel maps the model: then the same
        body with only the model changed."""
        mapped = attempt.model != client_model
        if self.form is None:
            body = OpenAIBody(self.raw, dict(self.fields))
            if mapped:
                body.set("model", attempt.model)
            return adaptor.build_request(attempt, body)
        if not mapped:
            return adaptor.build_raw_request(attempt, self.raw, self.content_type)
        content, content_type = self.form.with_value("model", attempt.model).encode()
        return adaptor.build_raw_request(attempt, content, content_type)


def parse_client_body(request: Request, mode: RelayMode) -> ClientBody:
    accepted = ENCODINGS[mode]
    header = request.header("content-type")
    if request.content_type == MULTIPART:
        if FORM not in accepted:
            raise bad_request("this endpoint takes a JSON body", "invalid_request_body")
        try:
            form = multipart.parse_form(request.body, header)
        except multipart.MultipartError as error:
            raise bad_request(f"invalid multipart body: {error}", "invalid_request_body") from None
        return ClientBody(request.body, header, form.fields(), form)
    if JSON not in accepted:
        raise bad_request("this endpoint takes a multipart/form-data body", "invalid_request_body")
    return ClientBody(request.body, header, _json_object(request.body), None)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise bad_request(
            f"invalid JSON in request body: {error}", "invalid_request_body"
        ) from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object", "invalid_request_body")
    return payload


def str_field(fields: dict[str, Any], name: str) -> str | None:
    """A text field; absent and empty are the same (a form cannot tell them apart)."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string", "invalid_value", name)
    return value


def int_field(fields: dict[str, Any], name: str) -> int | None:
    """An integer field: a JSON number, or a form field's digits."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    raise bad_request(f"{name} must be an integer", "invalid_value", name)


def requested_model(body: ClientBody, mode: RelayMode, caller: Caller) -> str:
    model = str_field(body.fields, "model") or mode.default_model
    if not model:
        raise bad_request("model name not specified", "model_missing", "model")
    auth.check_model_allowed(caller.key, model)
    return model


# --- one try on one channel -------------------------------------------------------------------


def attempt_on(
    channel: ChannelInfo, mode: RelayMode, model: str, request: Request
) -> tuple[Attempt, Adaptor]:
    adaptor = channel_adaptor(channel)
    actual_model = channel.model_mapping.get(model) or model
    return Attempt(channel, mode, actual_model, False, request), adaptor


async def open_charge(
    caller: Caller, attempt: Attempt, amount: int, request: Request, started: float
) -> Charge:
    return Charge(
        caller=caller,
        channel=attempt.channel,
        model=attempt.model,
        reservation=await reserve(caller, amount),
        request_id=request.request_id,
        started=started,
    )


@contextmanager
def released_on_failure(charge: Charge) -> Iterator[None]:
    """Anything that fails before the charge is settled (cancellation included) gives the
    reservation back."""
    try:
        yield
    except BaseException:
        charge.release()
        raise


def content_type_of(upstream: httpx.Response, default: str) -> bytes:
    return upstream.headers.get("content-type", default).encode("latin-1")


def relayed(upstream: httpx.Response, body: bytes) -> Response:
    return Response(
        upstream.status_code, body, content_type=content_type_of(upstream, "application/json")
    )


# --- images -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageOrder:
    n: int
    size: str
    quality: str

    def cost_ratio(self, model: str) -> float:
        """One API's image cost ratio: the size's, with dall-e-3 HD dearer."""
        ratio = IMAGE_SIZE_RATIOS.get(model, {}).get(self.size, 1)
        if model == "dall-e-3" and self.quality == "hd":
            ratio *= 2 if self.size == "1024x1024" else 1.5
        return ratio

    def quota(self, ratio: float, model: str) -> int:
        """int(model ratio × group ratio × cost ratio × 1000) per image, as One API."""
        return int(ratio * self.cost_ratio(model) * 1000) * self.n


def image_order(fields: dict[str, Any], mode: RelayMode, model: str) -> ImageOrder:
    """One API's defaults and checks, in its order; the limits are the requested model's."""
    prompt = str_field(fields, "prompt")
    # One API reads n=0 as the default; a negative n would make a negative price.
    n = int_field(fields, "n") or 1
    size = str_field(fields, "size") or DEFAULT_IMAGE_SIZE
    quality = str_field(fields, "quality") or ""
    if mode in PROMPT_REQUIRED and not prompt:
        raise bad_request("prompt is required", "prompt_missing", "prompt")
    sizes = IMAGE_SIZE_RATIOS.get(model)
    if sizes is not None and size not in sizes:
        raise bad_request(
            f"size {size} is not supported by {model}; use one of {', '.join(sizes)}",
            "size_not_supported",
            "size",
        )
    limit = IMAGE_PROMPT_LENGTH_LIMITS.get(model)
    if limit is not None and prompt is not None and len(prompt) > limit:
        raise bad_request(
            f"prompt is too long: {model} takes at most {limit} characters",
            "prompt_too_long",
            "prompt",
        )
    amounts = IMAGE_GENERATION_AMOUNTS.get(model)
    if n < 1 or (amounts is not None and not amounts[0] <= n <= amounts[1]):
        allowed = f"{amounts[0]} to {amounts[1]}" if amounts else "at least 1"
        raise bad_request(f"n must be {allowed} for {model}", "n_not_within_range", "n")
    return ImageOrder(n, size, quality)


async def relay_image(request: Request, mode: RelayMode) -> Response | StreamResponse:
    started = time.monotonic()
    caller = await authenticate(request)
    body = parse_client_body(request, mode)
    model = requested_model(body, mode, caller)
    order = image_order(body.fields, mode, model)

    async def attempt(channel: ChannelInfo) -> Response:
        this_try, adaptor = attempt_on(channel, mode, model, request)
        await adaptor.prepare(this_try)
        upstream_call = body.upstream_request(adaptor, this_try, model)
        prices = price(caller, this_try.model, channel.type)
        # The size is priced as requested (and validated), the model as sent upstream.
        quota = order.quota(prices.ratio, model)
        charge = await open_charge(caller, this_try, quota, request, started)
        with released_on_failure(charge):
            upstream = await adaptor.send(this_try, upstream_call)
            raw = await read_body(upstream)
            parse_result(raw, upstream.status_code)
        charge.settle(quota, 0, 0, prices.text)
        return relayed(upstream, raw)

    return await run_attempts(caller, model, attempt)


# --- speech -----------------------------------------------------------------------------------


def speech_input(fields: dict[str, Any]) -> str:
    text = str_field(fields, "input")
    if text is None:
        raise bad_request("input is required", "input_missing", "input")
    if len(text) > MAX_SPEECH_INPUT:
        raise bad_request(
            f"input is too long: at most {MAX_SPEECH_INPUT} characters", "text_too_long", "input"
        )
    return text


async def relay_speech(request: Request) -> Response | StreamResponse:
    mode = RelayMode.AUDIO_SPEECH
    started = time.monotonic()
    caller = await authenticate(request)
    body = parse_client_body(request, mode)
    model = requested_model(body, mode, caller)
    text = speech_input(body.fields)

    async def attempt(channel: ChannelInfo) -> StreamResponse:
        this_try, adaptor = attempt_on(channel, mode, model, request)
        await adaptor.prepare(this_try)
        upstream_call = body.upstream_request(adaptor, this_try, model)
        prices = price(caller, this_try.model, channel.type)
        quota = math.ceil(len(text) * prices.ratio)
        charge = await open_charge(caller, this_try, quota, request, started)
        with released_on_failure(charge):
            upstream = await adaptor.send(this_try, upstream_call)

        def settle() -> None:
            charge.settle(quota, 0, 0, prices.text)

        return StreamResponse(
            upstream.status_code,
            audio_frames(upstream, settle),
            content_type=content_type_of(upstream, "application/octet-stream"),
        )

    return await run_attempts(caller, model, attempt)


async def audio_frames(
    upstream: httpx.Response, settle: Callable[[], None]
) -> AsyncIterator[bytes]:
    """The upstream's audio chunk by chunk. The full price is settled in `finally`, which
    also runs when the client goes away: the speech was generated (and paid for upstream)
    whether or not the client heard all of it. An upstream that breaks off mid-body is
    re-raised, so the client's connection ends unfinished instead of looking complete."""
    try:
        async for chunk in upstream.aiter_bytes():
            if chunk:
                yield chunk
    finally:
        settle()
        await upstream.aclose()


# --- transcriptions and translations ----------------------------------------------------------


def cue_text(document: str) -> str:
    """The spoken lines of an SRT or WebVTT document: in each block, the lines after its
    timing line. Cue numbers, identifiers, the WEBVTT header and NOTE or STYLE blocks come
    before a timing line or have none. (One API keeps only a cue's first line.)"""
    spoken: list[str] = []
    normalised = document.replace("\r\n", "\n").replace("\r", "\n")
    for block in re.split(r"\n[ \t]*\n", normalised):
        lines = block.split("\n")
        for index, line in enumerate(lines):
            if "-->" in line:
                spoken.extend(text for text in lines[index + 1 :] if text.strip())
                break
    return "\n".join(spoken)


def transcript_of(raw: bytes, response_format: str, status: int) -> str:
    """The transcript in an upstream answer of the requested format."""
    if response_format in ("text", "srt", "vtt"):
        document = raw.decode("utf-8", errors="replace")
        return document.strip() if response_format == "text" else cue_text(document)
    # json, verbose_json, and any newer JSON format: the `text` field.
    text = parse_result(raw, status).get("text")
    return text if isinstance(text, str) else ""


async def relay_transcription(request: Request, mode: RelayMode) -> Response | StreamResponse:
    started = time.monotonic()
    caller = await authenticate(request)
    body = parse_client_body(request, mode)
    model = requested_model(body, mode, caller)
    response_format = str_field(body.fields, "response_format") or "json"

    async def attempt(channel: ChannelInfo) -> Response:
        this_try, adaptor = attempt_on(channel, mode, model, request)
        await adaptor.prepare(this_try)
        upstream_call = body.upstream_request(adaptor, this_try, model)
        prices = price(caller, this_try.model, channel.type)
        reserved = pricing.pre_consume_quota(0, 0, prices.ratio, caller.options)
        charge = await open_charge(caller, this_try, reserved, request, started)
        with released_on_failure(charge):
            upstream = await adaptor.send(this_try, upstream_call)
            raw = await read_body(upstream)
            transcript = transcript_of(raw, response_format, upstream.status_code)
        tokens = usage.count_text(transcript, this_try.model, caller.options)
        charge.settle(math.ceil(tokens * prices.ratio), tokens, 0, prices.text)
        return relayed(upstream, raw)

    return await run_attempts(caller, model, attempt)
