"""OpenAI's Responses API (`POST /v1/responses`), relayed to the channels that serve it.

The body goes upstream as the client sent it, with the channel's model name; the answer comes
back as it is: JSON, or the Responses event stream, whose `event:` lines are forwarded with
their `data:` lines (the chat relay drops them; Responses clients dispatch on them). Billing
reads `usage.input_tokens` / `usage.output_tokens` from the answer or from the terminal
event's `response` (`response.completed`, `.incomplete`, `.failed`); without them, the prompt
as counted here and the generated text (the `*.delta` events, or the answer's `output`).

Only OpenAI-format channels can serve it: OpenAI and the types that pass every path on
(resellers, Custom, OpenAI-Compatible), OpenRouter, xAI, and Azure at its own URL (see
`relay.adaptors.openai.VENDOR_PATHS` and `relay.adaptors.azure`). A channel of any other type
fails over to the next channel, and when none is left the client gets a 400 naming the type.

`GET` / `DELETE /v1/responses/{id}` (and `cancel`, `input_items`) act on state stored by the
upstream that created the response; the relay does not record which channel that was, so
these answer 501 `api_not_implemented` (see `relay.routes`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from billing import pricing
from channels_mgmt.selection import ChannelInfo
from oneapi.options import OptionSnapshot
from relay import auth, usage
from relay.adaptors.azure import AzureAdaptor
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, UpstreamRequest
from relay.adaptors.openai import OpenAIAdaptor, unsupported_mode
from relay.caller import Caller, authenticate
from relay.dispatch import Charge, channel_adaptor, price, read_body, reserve, run_attempts
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.http import Request, Response, StreamResponse
from relay.modes import RelayMode
from relay.streaming import DONE, LineSplitter
from relay.text import StreamFinisher, parse_json_object, parse_result

MODE = RelayMode.RESPONSES
# Events carrying generated text, counted when the upstream reports no usage.
TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
# The events that end a response, each with the whole response (and its usage).
FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


# ---------------------------------------------------------------------- shared with rerank


def client_model(payload: dict[str, Any], caller: Caller) -> str:
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise RelayError(400, "model name not specified", code="model_missing", param="model")
    auth.check_model_allowed(caller.key, model)
    return model


def cannot_serve(attempt: Attempt) -> UpstreamFailure:
    """This channel cannot serve the mode: try the next one; the client sees the 400 (naming
    the channel type) only when no channel could. Nothing is said about the channel's health."""
    return UpstreamFailure(unsupported_mode(attempt), retryable=True, from_upstream=False)


def build_or_skip(adaptor: Adaptor, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
    """The adaptor's request; its refusal of the mode (a vendor without it) skips the channel."""
    try:
        return adaptor.build_request(attempt, body)
    except RelayError as error:
        if error.code != "unsupported_mode":
            raise
        raise UpstreamFailure(error, retryable=True, from_upstream=False) from None


def content_type_of(upstream: httpx.Response) -> bytes:
    return upstream.headers.get("content-type", "application/json").encode("latin-1")


# ---------------------------------------------------------------------- the request


def max_output_tokens(payload: dict[str, Any]) -> int:
    value = payload.get("max_output_tokens")
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RelayError(
            400, "max_output_tokens is invalid", code="invalid_value", param="max_output_tokens"
        )
    return value


def content_tokens(content: Any, model: str, options: OptionSnapshot) -> int:
    """A message's content: a string, or parts (`input_text`, `output_text`, `input_image`)."""
    if isinstance(content, str):
        return usage.count_text(content, model, options)
    tokens = 0
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            tokens += usage.count_text(part["text"], model, options)
        elif part.get("type") == "input_image":
            tokens += usage.IMAGE_PART_TOKENS
    return tokens


def input_tokens(value: Any, model: str, options: OptionSnapshot) -> int:
    """`input`: a string, or items (messages, tool calls and their outputs)."""
    if isinstance(value, str):
        return usage.count_text(value, model, options)
    tokens = 0
    for item in value if isinstance(value, list) else ():
        if not isinstance(item, dict):
            continue
        if "content" in item:
            tokens += usage.TOKENS_PER_MESSAGE + content_tokens(item["content"], model, options)
        for name in ("output", "arguments"):
            if isinstance(item.get(name), str):
                tokens += usage.count_text(item[name], model, options)
    return tokens


def count_prompt(payload: dict[str, Any], model: str, options: OptionSnapshot) -> int:
    """For the reservation, and for billing an upstream that reports no usage."""
    tokens = input_tokens(payload.get("input"), model, options)
    instructions = payload.get("instructions")
    if isinstance(instructions, str):
        tokens += usage.count_text(instructions, model, options)
    return tokens + usage.count_tools(payload, model, options)


def apply_instructions(body: OpenAIBody, system_prompt: str) -> bool:
    """The channel's forced system prompt is the Responses API's `instructions`."""
    if not system_prompt:
        return False
    body.set("instructions", system_prompt)
    return True


def output_text(result: dict[str, Any]) -> str:
    """Everything generated in a non-stream answer: text, refusals, tool-call arguments and
    reasoning summaries of its `output` items."""
    parts: list[str] = []
    for item in result.get("output") or ():
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("arguments"), str):
            parts.append(item["arguments"])
        for name in ("content", "summary"):
            for part in item.get(name) or ():
                if not isinstance(part, dict):
                    continue
                for key in ("text", "refusal"):
                    if isinstance(part.get(key), str):
                        parts.append(part[key])
    return "".join(parts)


# ---------------------------------------------------------------------- the stream


@dataclass
class ResponsesStream:
    """Forwards each event block (`event:` and `data:` lines, comments) verbatim once its
    blank line arrives, and keeps the usage of the terminal event and the generated text."""

    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    block: list[bytes] = field(default_factory=list)

    def accept(self, line: bytes) -> bytes | None:
        if line:
            self.block.append(line)
            if line.startswith(b"data:"):
                self._track(line[5:].strip())
            return None
        return self.flush()

    def flush(self) -> bytes | None:
        """The pending block as one frame (an upstream that ended without a blank line)."""
        if not self.block:
            return None
        frame = b"\n".join(self.block) + b"\n\n"
        self.block.clear()
        return frame

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def _track(self, payload: bytes) -> None:
        if payload == DONE:  # not part of the protocol, but some vendors send it
            self.saw_done = True
            return
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind in TEXT_DELTAS and isinstance(event.get("delta"), str):
            self.generated.append(event["delta"])
        elif kind in FINAL_EVENTS:
            self.saw_done = True
            response = event.get("response")
            found = response.get("usage") if isinstance(response, dict) else None
            if isinstance(found, dict) and found:
                self.usage = found
        elif kind == "error":
            self.upstream_error = event


def interrupted_event(error: Exception) -> bytes:
    """The Responses API's own `error` event, so SDKs surface the break as an error."""
    detail = str(error) or type(error).__name__
    event = {
        "type": "error",
        "code": "stream_interrupted",
        "message": f"upstream stream interrupted: {detail}",
        "param": None,
    }
    return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"


async def event_frames(
    upstream: httpx.Response, translator: ResponsesStream, finish: StreamFinisher
) -> AsyncIterator[bytes]:
    """The upstream's events as they complete; no `[DONE]` of our own (the protocol ends with
    `response.completed`). Billing runs in `finally`, on a client disconnect too."""
    splitter = LineSplitter()
    try:
        try:
            async for chunk in upstream.aiter_bytes():
                for line in splitter.feed(chunk):
                    frame = translator.accept(line)
                    if frame is not None:
                        yield frame
            for line in splitter.flush():
                translator.accept(line)
            rest = translator.flush()
            if rest is not None:
                yield rest
        except httpx.HTTPError as error:
            translator.upstream_error = {"type": UPSTREAM_ERROR, "message": str(error)}
            yield interrupted_event(error)
    finally:
        await finish()


def is_event_stream(upstream: httpx.Response) -> bool:
    return not upstream.headers.get("content-type", "").startswith("application/json")


# ---------------------------------------------------------------------- the handler


def serving_adaptor(attempt: Attempt) -> Adaptor:
    adaptor = channel_adaptor(attempt.channel)
    if not isinstance(adaptor, OpenAIAdaptor | AzureAdaptor):
        raise cannot_serve(attempt)
    return adaptor


async def relay_responses(request: Request) -> Response | StreamResponse:
    started = time.monotonic()
    caller = await authenticate(request)
    payload = parse_json_object(request.body)
    model = client_model(payload, caller)
    max_tokens = max_output_tokens(payload)
    prompt_tokens = count_prompt(payload, model, caller.options)
    stream = payload.get("stream") is True

    async def attempt(channel: ChannelInfo) -> Response | StreamResponse:
        actual_model = channel.model_mapping.get(model) or model
        this_try = Attempt(channel, MODE, actual_model, stream, request)
        adaptor = serving_adaptor(this_try)
        body = OpenAIBody(request.body, dict(payload))
        if actual_model != model:
            body.set("model", actual_model)
        system_prompt_reset = apply_instructions(body, channel.system_prompt)
        await adaptor.prepare(this_try)
        upstream_call = build_or_skip(adaptor, this_try, body)
        prices = price(caller, actual_model, channel.type)
        amount = pricing.pre_consume_quota(prompt_tokens, max_tokens, prices.ratio, caller.options)
        estimate = caller.runtime.estimates.for_text(
            actual_model,
            prompt_tokens,
            max_tokens,
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

        def bill(usage_data: Any, generated: str) -> None:
            tokens = usage.tokens_from_usage(usage_data, prompt_tokens)
            if tokens is None:
                tokens = (prompt_tokens, usage.count_text(generated, actual_model, caller.options))
            quota = pricing.text_quota(*tokens, prices.ratio, prices.completion_ratio)
            caller.runtime.estimates.observe(actual_model, quota)
            charge.settle(quota, tokens[0], tokens[1], prices.text)

        try:
            upstream = await adaptor.send(this_try, upstream_call)
            if stream and is_event_stream(upstream):
                translator = ResponsesStream()
                finish = StreamFinisher(upstream, translator, bill)
                frames = event_frames(upstream, translator, finish)
                return StreamResponse(200, frames, on_close=finish)
            raw = await read_body(upstream)
            result = parse_result(raw, upstream.status_code)
        except BaseException:
            charge.release()
            raise
        bill(result.get("usage"), output_text(result))
        return Response(upstream.status_code, raw, content_type=content_type_of(upstream))

    return await run_attempts(caller, model, attempt, prompt_tokens)
