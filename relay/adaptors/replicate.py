"""Replicate predictions: chat (language models) and image generation, by polling.

`POST {root}/v1/models/{owner}/{name}/predictions` (`{root}/v1/predictions` with a
`version` for `owner/name:version` models), Bearer token, `{input: {...}}`; the answer is a
prediction (`201`, `status` starting/processing/succeeded/failed/canceled) whose `urls.get`
is polled until it ends, at a growing interval and within a deadline (a prediction still
running then is cancelled, so it stops costing money). `Prefer: wait` lets fast models
answer in the first exchange.

Chat models get `{prompt, system_prompt, max_tokens (max_new_tokens on Llama 2),
temperature, top_p, ...}`; their output is a list of text pieces, joined, and their
`metrics.input_token_count`/`output_token_count` are the usage. Image models get
`{prompt, aspect_ratio, num_outputs}` and answer with file URLs, passed on as OpenAI image
`url`s, or fetched and base64-encoded for `response_format: b64_json`. A client may add
model-specific inputs under a top-level `input` object; they are merged in.

Replicate's own streams (`urls.stream`) are not used: the relay gets the finished
prediction and replays it as chunks to a stream request (`fake_stream`, as for DeepL).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import re
import time
from typing import Any

import httpx
import orjson

from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.cloudflare import clamp, send_reading_errors
from relay.adaptors.common import client_payload
from relay.adaptors.coze import (
    chat_completion,
    chat_messages,
    completion_id,
    content_text,
    parse_json_object,
    refuse_unsupported,
    unsupported,
)
from relay.adaptors.deepl import JsonAnswerStream
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure, failure_from_exception
from relay.modes import RelayMode
from relay.upstream import get_client

DONE_STATUSES = frozenset({"succeeded", "failed", "canceled"})
# Seconds Replicate may hold the creating request open for a fast model (its limit is 60).
PREFER_WAIT_SECONDS = 30
MAX_IMAGE_BYTES = 20 * 1024 * 1024
# Aspect ratios Replicate's image models share (flux, stable diffusion 3.x, ideogram).
ASPECT_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
# Image models that make several pictures per prediction (`num_outputs`); the others
# make one, so n > 1 is refused for them rather than billed and not delivered.
MULTI_OUTPUT_MODELS = frozenset(
    {
        "black-forest-labs/flux-schnell",
        "black-forest-labs/flux-dev",
        "black-forest-labs/flux-schnell-lora",
        "black-forest-labs/flux-dev-lora",
        "stability-ai/sdxl",
    }
)
SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")

Json = dict[str, Any]


# ---------------------------------------------------------------------- request


def api_root(attempt: Attempt) -> str:
    """The API host: the default base URL is `https://api.replicate.com/v1/models/`."""
    root = base_url(attempt)
    for suffix in ("/v1/models", "/v1"):
        root = root.removesuffix(suffix)
    return root


def predictions_url(attempt: Attempt) -> tuple[str, str | None]:
    """(URL, version) of the create call for this model."""
    model = attempt.model
    name, _, version = model.partition(":")
    if name.count("/") != 1 or not all(name.split("/")):
        raise unsupported(f"Replicate models are named owner/name, not {model!r}")
    if version:
        return f"{api_root(attempt)}/v1/predictions", version
    return f"{api_root(attempt)}/v1/models/{name}/predictions", None


def max_tokens_field(model: str) -> str:
    # Meta's Llama 2 models predate Replicate's `max_tokens` convention.
    return "max_new_tokens" if "llama-2" in model else "max_tokens"


def prompt_of(messages: list[Json]) -> tuple[str, str]:
    """(system prompt, prompt). One user turn is the prompt itself; a conversation is
    written out turn by turn (as One API does) with the assistant's cue at the end."""
    system = [
        content_text(m.get("content"), "Replicate")
        for m in messages
        if m.get("role") in ("system", "developer")
    ]
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    if len(turns) == 1 and turns[0].get("role") == "user":
        return "\n".join(system), content_text(turns[0].get("content"), "Replicate")
    lines = [f"{m.get('role')}: {content_text(m.get('content'), 'Replicate')}" for m in turns]
    return "\n".join(system), "\n".join([*lines, "assistant:"])


def extra_input(payload: Json) -> Json:
    extra = payload.get("input")
    return dict(extra) if isinstance(extra, dict) else {}


def convert_chat_request(payload: Json, model: str) -> Json:
    refuse_unsupported(payload, "Replicate")
    messages = chat_messages(payload)
    system, prompt = prompt_of(messages)
    if not prompt.strip():
        raise RelayError(400, "the conversation has no text", code="invalid_text_request")
    values: Json = {"prompt": prompt}
    if system:
        values["system_prompt"] = system
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0:
        values[max_tokens_field(model)] = max_tokens
    for name, low, high in (("temperature", 0.01, 5.0), ("top_p", 0.0, 1.0)):
        value = clamp(payload.get(name), low, high)
        if value is not None:
            values[name] = value
    for name in ("presence_penalty", "frequency_penalty"):
        value = clamp(payload.get(name), -2.0, 2.0)
        if value is not None:
            values[name] = value
    stop = payload.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops:
        values["stop_sequences"] = ",".join(stops)  # Replicate's LLMs take a CSV string
    if isinstance(payload.get("seed"), int) and not isinstance(payload["seed"], bool):
        values["seed"] = payload["seed"]
    return {**values, **extra_input(payload)}


def aspect_ratio(size: Any) -> str | None:
    """OpenAI's `WxH` as the nearest aspect ratio Replicate's image models take."""
    if size is None or size == "":
        return None
    match = SIZE.match(size) if isinstance(size, str) else None
    if match is None or not int(match[1]) or not int(match[2]):
        raise RelayError(400, f"invalid size {size!r}: use WIDTHxHEIGHT", code="invalid_size")
    wanted = math.log(int(match[1]) / int(match[2]))

    def distance(ratio: str) -> float:
        width, height = ratio.split(":")
        return abs(math.log(int(width) / int(height)) - wanted)

    return min(ASPECT_RATIOS, key=distance)


def convert_image_request(payload: Json, model: str) -> Json:
    prompt = payload.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise RelayError(400, "prompt is required", code="prompt_missing", param="prompt")
    values: Json = {"prompt": prompt}
    ratio = aspect_ratio(payload.get("size"))
    if ratio is not None:
        values["aspect_ratio"] = ratio
    n = payload.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        if model.partition(":")[0] not in MULTI_OUTPUT_MODELS:
            raise unsupported(f"{model} makes one image per request; n must be 1")
        values["num_outputs"] = n
    return {**values, **extra_input(payload)}


# ---------------------------------------------------------------------- predictions


def problem_message(data: Any) -> tuple[str, Any] | None:
    """Replicate's errors are RFC 7807 problems: `{title, detail, status}`."""
    if not isinstance(data, dict):
        return None
    message = data.get("detail") or data.get("title")
    if not isinstance(message, str) or not message:
        return None
    return message, data.get("title") if isinstance(data.get("title"), str) else None


def bad_prediction(message: str, code: str, status: int = 500) -> UpstreamFailure:
    # Not retried: the prediction ran (and was paid for) on this account already.
    return UpstreamFailure(
        RelayError(status, message, type=UPSTREAM_ERROR, code=code), retryable=False
    )


async def fetch_prediction(call: UpstreamRequest) -> Json:
    response = await send_reading_errors(call, problem_message)
    try:
        body = await response.aread()
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    finally:
        await response.aclose()
    data = parse_json_object(body)
    if data is None:
        raise UpstreamFailure(
            RelayError(
                500,
                "Replicate answered with something other than a prediction",
                code="bad_response_body",
            ),
            retryable=True,
        )
    return data


def output_text(output: Any) -> str:
    if isinstance(output, list):
        return "".join(str(piece) for piece in output if piece is not None)
    return "" if output is None else str(output)


def output_urls(output: Any) -> list[str]:
    items = output if isinstance(output, list) else [output]
    return [item for item in items if isinstance(item, str) and item]


def prediction_usage(prediction: Json) -> Json | None:
    metrics = prediction.get("metrics")
    if not isinstance(metrics, dict):
        return None
    prompt, completion = metrics.get("input_token_count"), metrics.get("output_token_count")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def convert_chat_response(prediction: Json, model: str) -> Json:
    return chat_completion(
        output_text(prediction.get("output")),
        model,
        completion_id(prediction.get("id")),
        prediction_usage(prediction),
    )


def image_response(urls: list[str], b64_images: list[str] | None) -> Json:
    data = (
        [{"b64_json": image} for image in b64_images]
        if b64_images is not None
        else [{"url": url} for url in urls]
    )
    return {"created": int(time.time()), "data": data}


async def fetch_image(url: str) -> str:
    """A generated file, base64-encoded (bounded: a data URL has to fit in memory)."""
    try:
        async with get_client().stream("GET", url) as response:
            if response.status_code != 200:
                raise RelayError(
                    502,
                    f"fetching the generated image failed: HTTP {response.status_code}",
                    code="image_fetch_failed",
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise RelayError(
                        502, "the generated image is too large", code="image_fetch_failed"
                    )
                chunks.append(chunk)
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    return base64.b64encode(b"".join(chunks)).decode()


def prediction_url(attempt: Attempt, prediction: Json, kind: str) -> str:
    """The prediction's own `urls.get`/`urls.cancel`, else the documented path."""
    urls = prediction.get("urls") if isinstance(prediction.get("urls"), dict) else {}
    if isinstance(urls.get(kind), str) and urls[kind]:
        return urls[kind]
    path = f"{api_root(attempt)}/v1/predictions/{prediction.get('id')}"
    return path if kind == "get" else f"{path}/{kind}"


def json_response(call: UpstreamRequest, data: Json) -> httpx.Response:
    return httpx.Response(
        200,
        headers={"content-type": "application/json"},
        content=orjson.dumps(data),
        request=httpx.Request(call.method, call.url),
    )


# ---------------------------------------------------------------------- adaptor


class ReplicateAdaptor(Adaptor):
    # Replicate's streams are not used: stream requests get the finished prediction
    # replayed as chunks by `relay.text`.
    fake_stream = True
    # Polling: first interval, the most it grows to, and the deadline of a prediction.
    poll_interval = 0.5
    max_poll_interval = 5.0
    prediction_timeout = 300.0

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        mode = attempt.mode
        if mode is RelayMode.CHAT:
            values = convert_chat_request(body.payload, attempt.model)
        elif mode is RelayMode.IMAGES_GENERATIONS:
            values = convert_image_request(body.payload, attempt.model)
        else:
            raise unsupported(f"{mode.upstream_path} is not supported by channel type Replicate")
        url, version = predictions_url(attempt)
        payload: Json = {"input": values}
        if version is not None:
            payload["version"] = version
        headers = {
            **self.auth(attempt),
            "Content-Type": "application/json",
            "Prefer": f"wait={PREFER_WAIT_SECONDS}",
        }
        return UpstreamRequest("POST", url, headers, orjson.dumps(payload))

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(
            f"{attempt.mode.upstream_path} is not supported by channel type Replicate"
        )

    @staticmethod
    def auth(attempt: Attempt) -> dict[str, str]:
        return {"Authorization": f"Bearer {attempt.channel.key}"}

    async def send(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        prediction = await self.run_prediction(attempt, call)
        if attempt.mode is not RelayMode.IMAGES_GENERATIONS:
            return json_response(call, prediction)
        urls = output_urls(prediction.get("output"))
        if not urls:
            raise bad_prediction("the prediction succeeded without an image", "empty_output")
        b64_images = None
        if client_payload(attempt).get("response_format") == "b64_json":
            b64_images = list(await asyncio.gather(*(fetch_image(url) for url in urls)))
        return json_response(call, image_response(urls, b64_images))

    async def run_prediction(self, attempt: Attempt, call: UpstreamRequest) -> Json:
        """Create the prediction and poll it until it ends; its final state, succeeded."""
        prediction = await fetch_prediction(call)
        deadline = time.monotonic() + self.prediction_timeout
        interval = self.poll_interval
        while prediction.get("status") not in DONE_STATUSES:
            if time.monotonic() >= deadline:
                await self.cancel(attempt, prediction)
                raise bad_prediction(
                    f"prediction {prediction.get('id')} did not finish in "
                    f"{self.prediction_timeout:g}s and was cancelled",
                    "prediction_timeout",
                    504,
                )
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, self.max_poll_interval)
            prediction = await fetch_prediction(self.poll_call(attempt, prediction))
        status = prediction.get("status")
        if status != "succeeded":
            detail = prediction.get("error") or f"the prediction was {status}"
            raise bad_prediction(f"Replicate prediction {status}: {detail}", f"prediction_{status}")
        return prediction

    def poll_call(self, attempt: Attempt, prediction: Json) -> UpstreamRequest:
        url = prediction_url(attempt, prediction, "get")
        return UpstreamRequest("GET", url, self.auth(attempt))

    async def cancel(self, attempt: Attempt, prediction: Json) -> None:
        url = prediction_url(attempt, prediction, "cancel")
        with contextlib.suppress(httpx.HTTPError):
            response = await get_client().post(url, headers=self.auth(attempt))
            await response.aclose()

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        if attempt.mode is RelayMode.IMAGES_GENERATIONS:
            return body  # `send` answered in OpenAI's format already
        prediction = parse_json_object(body)
        if prediction is None:
            return body
        return orjson.dumps(convert_chat_response(prediction, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        return JsonAnswerStream(
            client_wants_usage=client_wants_usage,
            convert=lambda data: convert_chat_response(data, attempt.model),
        )
