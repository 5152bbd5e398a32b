"""The text relay: chat, completions, embeddings, moderations and edits (facts §3.3)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson

from billing import pricing
from channels_mgmt.selection import ChannelInfo
from relay import auth, usage
from relay.adaptors.base import Attempt, OpenAIBody, StreamTranslator
from relay.caller import Caller, authenticate
from relay.dispatch import (
    AttemptFn,
    Charge,
    channel_adaptor,
    price,
    read_body,
    reserve,
    run_attempts,
)
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.http import Request, Response, StreamResponse
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME, LineSplitter, completion_frames
from relay.transport import iter_body

MAX_TOKENS_LIMIT = (2**31 - 1) // 2
REQUIRED_FIELD = {
    RelayMode.CHAT: "messages",
    RelayMode.COMPLETIONS: "prompt",
    RelayMode.MODERATIONS: "input",
    RelayMode.EDITS: "instruction",
    RelayMode.EMBEDDINGS: "input",
}


def invalid_request(message: str) -> RelayError:
    return RelayError(400, message, code="invalid_text_request")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise invalid_request(f"invalid JSON in request body: {error}") from None
    if not isinstance(payload, dict):
        raise invalid_request("request body must be a JSON object")
    return payload


def validate(payload: dict[str, Any], mode: RelayMode) -> None:
    """One API's `ValidateTextRequest`, same messages."""
    max_tokens = payload.get("max_tokens")
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or not 0 <= max_tokens <= MAX_TOKENS_LIMIT
    ):
        raise invalid_request("max_tokens is invalid")
    if not payload.get("model"):
        raise invalid_request("model name not specified")
    if not isinstance(payload["model"], str):
        raise invalid_request("model must be a string")
    if payload.get("stream") is not None and not isinstance(payload["stream"], bool):
        # Forwarded as sent, a truthy non-boolean makes lenient upstreams stream an answer
        # the relay would not read (nor bill).
        raise invalid_request("stream must be a boolean")
    field = REQUIRED_FIELD.get(mode)
    if field is not None and payload.get(field) in (None, "", []):
        raise invalid_request(f"field {field} is required")


def count_prompt(payload: dict[str, Any], mode: RelayMode, model: str, caller: Caller) -> int:
    options = caller.options
    if mode is RelayMode.CHAT:
        return usage.count_messages(payload.get("messages"), model, options) + usage.count_tools(
            payload, model, options
        )
    if mode is RelayMode.COMPLETIONS:
        return usage.count_input(payload.get("prompt"), model, options)
    if mode in (RelayMode.MODERATIONS, RelayMode.EMBEDDINGS):
        # One API counts 0 for embeddings; counting the input keeps upstreams that report no
        # usage (Gemini) from serving embeddings for free.
        return usage.count_input(payload.get("input"), model, options)
    return 0  # edits: One API reserves nothing for the prompt


def apply_system_prompt(body: OpenAIBody, prompt: str) -> bool:
    """The channel's forced system prompt replaces the first system message or leads."""
    messages = body.payload.get("messages")
    if not prompt or not isinstance(messages, list) or not messages:
        return False
    first = messages[0]
    if isinstance(first, dict) and first.get("role") == "system":
        messages = [{**first, "content": prompt}, *messages[1:]]
    else:
        messages = [{"role": "system", "content": prompt}, *messages]
    body.set("messages", messages)
    return True


def wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def ask_for_usage(body: OpenAIBody) -> None:
    options = body.payload.get("stream_options")
    merged = dict(options) if isinstance(options, dict) else {}
    if merged.get("include_usage") is not True:
        merged["include_usage"] = True
        body.set("stream_options", merged)


async def relay_text(request: Request, mode: RelayMode) -> Response | StreamResponse:
    started = time.monotonic()
    caller = await authenticate(request)
    payload = parse_json_object(request.body)
    if mode is RelayMode.EMBEDDINGS and request.params.get("model"):
        payload.setdefault("model", request.params["model"])
    if not payload.get("model") and mode.default_model:
        payload["model"] = mode.default_model
    model = str(payload.get("model") or "")
    if model:
        auth.check_model_allowed(caller.key, model)
    validate(payload, mode)
    prompt_tokens = count_prompt(payload, mode, model, caller)
    if mode is RelayMode.CHAT:  # remote images are fetched to be measured
        prompt_tokens += await usage.count_remote_images(payload.get("messages"), model)
    attempt = text_attempt(request, caller, mode, payload, prompt_tokens, started)
    return await run_attempts(caller, model, attempt, prompt_tokens)


def text_attempt(
    request: Request,
    caller: Caller,
    mode: RelayMode,
    payload: dict[str, Any],
    prompt_tokens: int,
    started: float,
) -> AttemptFn:
    """One channel's try at a parsed, validated text request. `request.body` is what goes
    upstream unless the relay edits it: an inbound format converted to OpenAI's (Anthropic's
    Messages API) passes a request carrying the converted body."""
    model = str(payload.get("model") or "")
    stream = mode.streams and payload.get("stream") is True
    client_wants_usage = wants_usage(payload)

    async def attempt(channel: ChannelInfo) -> Response | StreamResponse:
        adaptor = channel_adaptor(channel)
        actual_model = channel.model_mapping.get(model) or model
        body = OpenAIBody(request.body, dict(payload))
        if actual_model != model or body.payload.get("model") != model:
            body.set("model", actual_model)
        system_prompt_reset = mode is RelayMode.CHAT and apply_system_prompt(
            body, channel.system_prompt
        )
        if stream:
            ask_for_usage(body)
        this_try = Attempt(channel, mode, actual_model, stream, request)
        await adaptor.prepare(this_try)
        upstream_call = adaptor.build_request(this_try, body)
        prices = price(caller, actual_model, channel.type)
        max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens") or 0
        amount = pricing.pre_consume_quota(
            prompt_tokens,
            max_tokens if isinstance(max_tokens, int) else 0,
            prices.ratio,
            caller.options,
        )
        estimate = caller.runtime.estimates.for_text(
            actual_model,
            prompt_tokens,
            max_tokens if isinstance(max_tokens, int) else 0,
            prices.ratio,
            prices.completion_ratio,
            caller.options,
        )
        charge = Charge(
            caller=caller,
            channel=channel,
            model=actual_model,
            reservation=await reserve(caller, amount, estimate),
            request_id=request.request_id,
            started=started,
            is_stream=stream,
            system_prompt_reset=system_prompt_reset,
        )

        def bill(usage_data: Any, generated: str) -> tuple[int, int]:
            tokens = usage.tokens_from_usage(usage_data, prompt_tokens)
            if tokens is None:
                tokens = (prompt_tokens, usage.count_text(generated, actual_model, caller.options))
            quota = pricing.text_quota(*tokens, prices.ratio, prices.completion_ratio)
            caller.runtime.estimates.observe(actual_model, quota)
            charge.settle(quota, tokens[0], tokens[1], prices.text)
            return tokens

        try:
            upstream = await adaptor.send(this_try, upstream_call)
            if stream and _is_event_stream(upstream):
                translator = adaptor.stream_translator(this_try, client_wants_usage)
                finish = StreamFinisher(upstream, translator, bill)
                return StreamResponse(
                    200, _stream_frames(upstream, translator, finish), on_close=finish
                )
            raw = await read_body(upstream)
            result = parse_result(raw, upstream.status_code)
            body_out = adaptor.translate_response(this_try, raw)
            if body_out is not raw:
                # Bill from what the client gets: converting adaptors fold extra usage
                # (cache tokens) into it, and generated text lives in its `choices`.
                result = orjson.loads(body_out)
        except BaseException:
            charge.release()
            raise
        billed = bill(result.get("usage"), usage.completion_text(result))
        if not isinstance(result.get("usage"), dict) and mode in COUNTED_USAGE_MODES:
            # OpenAI clients read `usage` from every chat answer; an upstream that reports
            # none (PaLM, AIProxy Library) gets the counts it was billed by.
            counted = {"prompt_tokens": billed[0], "completion_tokens": billed[1]}
            if mode is RelayMode.EMBEDDINGS:
                del counted["completion_tokens"]  # OpenAI's embeddings usage has none
            result["usage"] = {**counted, "total_tokens": billed[0] + billed[1]}
            body_out = orjson.dumps(result)
        if stream and mode is RelayMode.CHAT:
            # The upstream cannot stream (PaLM, DeepL, Replicate) or ignored `stream`: the
            # client asked for events, so it gets the answer as chunks.
            return StreamResponse(200, _single_body(completion_frames(result, client_wants_usage)))
        content_type = upstream.headers.get("content-type", "application/json").encode("latin-1")
        return Response(upstream.status_code, body_out, content_type=content_type)

    return attempt


COUNTED_USAGE_MODES = frozenset({RelayMode.CHAT, RelayMode.COMPLETIONS, RelayMode.EMBEDDINGS})


async def _single_body(frames: bytes) -> AsyncIterator[bytes]:
    yield frames


def _is_event_stream(response: httpx.Response) -> bool:
    """One API treats a JSON answer to a stream request as an error; here a successful JSON
    answer is relayed as the answer it is (as chunks when the client asked for a stream)."""
    content_type = response.headers.get("content-type", "")
    return not content_type.startswith("application/json")


def parse_result(raw: bytes, status: int) -> dict[str, Any]:
    try:
        result = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise UpstreamFailure(
            RelayError(
                500,
                f"unmarshal_response_body_failed: {error}",
                code="unmarshal_response_body_failed",
            ),
            retryable=True,
        ) from None
    if not isinstance(result, dict):
        raise UpstreamFailure(
            RelayError(500, "upstream answered with a non-object", code="bad_response_body"),
            retryable=True,
        )
    error = result.get("error")
    if isinstance(error, dict) and error.get("type"):
        raise UpstreamFailure(
            RelayError(
                500 if status < 400 else status,
                str(error.get("message") or "upstream error"),
                type=str(error["type"]),
                code=error.get("code"),
                param=error.get("param"),
            ),
            retryable=True,
        )
    return result


def _interrupted_frame(error: Exception) -> bytes:
    detail = str(error) or type(error).__name__
    event = {
        "error": {
            "message": f"upstream stream interrupted: {detail}",
            "type": UPSTREAM_ERROR,
            "param": "",
            "code": "stream_interrupted",
        }
    }
    return b"data: " + orjson.dumps(event) + b"\n\n"


class StreamFinisher:
    """Bills a stream and closes its upstream exactly once, whichever way it ended."""

    def __init__(
        self,
        upstream: httpx.Response,
        translator: StreamTranslator,
        bill: Callable[[Any, str], None],
    ) -> None:
        self.upstream = upstream
        self.translator = translator
        self.bill = bill
        self.done = False

    async def __call__(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.bill(self.translator.usage, self.translator.generated_text)
        finally:
            await self.upstream.aclose()


async def _stream_frames(
    upstream: httpx.Response,
    translator: StreamTranslator,
    finish: StreamFinisher,
) -> AsyncIterator[bytes]:
    """Forward each event as its line completes; bill in `finally`, which also runs when the
    client disconnects (this generator is then cancelled mid-read)."""
    splitter = LineSplitter()
    accept_bytes = getattr(translator, "accept_bytes", None)
    try:
        try:
            async for chunk in iter_body(upstream):
                if accept_bytes is not None:  # a binary stream: no lines to split
                    frame = accept_bytes(chunk)
                    if frame is not None:
                        yield frame
                    continue
                # The events of one read go out in one message: as prompt as one by one,
                # and an upstream that sends its answer at once costs one send, not dozens.
                frames = [translator.accept(line) for line in splitter.feed(chunk)]
                joined = b"".join(frame for frame in frames if frame is not None)
                if joined:
                    yield joined
            for line in splitter.flush():
                frame = translator.accept(line)
                if frame is not None:
                    yield frame
        except httpx.HTTPError as error:
            yield _interrupted_frame(error)
            return
        if translator.upstream_error is None and not translator.saw_done:
            yield DONE_FRAME
    finally:
        await finish()
