"""`POST /v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API, inbound.

Same keys, routing, retries, quota and logs as `/v1/chat/completions`; the key comes in
`x-api-key` (Anthropic's SDKs) or `Authorization: Bearer`. Each channel tried is served the
way it can be:

- channels that speak Anthropic's API (Anthropic, Claude on AWS Bedrock and on Vertex AI)
  get the client's body as it is, only the model mapped, and their answer goes back
  untouched (the adaptors' native `RelayMode.MESSAGES`);
- any other channel gets the request converted to an OpenAI chat request, relayed exactly as
  one (`relay.text.text_attempt`), and its answer or chunk stream converted back.

Errors are in Anthropic's shape, in the body or as a stream's `error` event.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from billing import pricing
from channels_mgmt.selection import ChannelInfo
from relay import auth, text, usage
from relay.adaptors import anthropic, aws, vertex
from relay.adaptors.base import Attempt, OpenAIBody, StreamTranslator
from relay.caller import Caller, authenticate
from relay.catalog import ChannelType
from relay.dispatch import (
    AttemptFn,
    Charge,
    channel_adaptor,
    price,
    read_body,
    reserve,
    run_attempts,
)
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request, Response, StreamResponse, json_response
from relay.inbound import anthropic_convert as convert
from relay.modes import RelayMode
from relay.streaming import LineSplitter
from relay.text import StreamFinisher

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------- entry points


async def relay_messages(request: Request) -> Response | StreamResponse:
    try:
        response = await _relay(request)
    except RelayError as error:
        response = error_response(error, request.request_id)
    except Exception:
        logger.exception("messages relay panic (request id: %s)", request.request_id)
        response = error_response(RelayError(500, "internal error"), request.request_id)
    add_request_id(response, request.request_id)
    return response


async def count_tokens(request: Request) -> Response:
    """The prompt's tokens as the relay counts them (tiktoken): no upstream call, no charge."""
    try:
        caller = await authenticate(request, api_key(request))
        body = text.parse_json_object(request.body)
        convert.check_request(body, needs_max_tokens=False)
        model = str(body["model"])
        auth.check_model_allowed(caller.key, model)
        tokens = await prompt_tokens(body, model, caller)
        response = json_response(200, {"input_tokens": tokens})
    except RelayError as error:
        response = error_response(error, request.request_id)
    add_request_id(response, request.request_id)
    return response


def add_request_id(response: Response | StreamResponse, request_id: str) -> None:
    """Anthropic's `request-id` header too: its SDKs show it as the message's `_request_id`."""
    response.headers.append((b"request-id", request_id.encode()))


def api_key(request: Request) -> str | None:
    """Anthropic's header when present; `authenticate` reads Authorization otherwise."""
    return request.header("x-api-key").strip() or None


def error_response(error: RelayError, request_id: str) -> Response:
    kind = convert.error_type(error.status, error.type)
    body = convert.error_body(kind, f"{error.message} (request id: {request_id})")
    return json_response(error.status, body, error.headers)


async def prompt_tokens(body: dict[str, Any], model: str, caller: Caller) -> int:
    """Counted on the chat form of the request, like a chat request's prompt (URL images
    fetched to be measured); blocks without an OpenAI counterpart count for nothing."""
    payload = convert.to_openai_request(body, strict=False)
    tokens = text.count_prompt(payload, RelayMode.CHAT, model, caller)
    return tokens + await usage.count_remote_images(payload.get("messages"), model)


async def _relay(request: Request) -> Response | StreamResponse:
    started = time.monotonic()
    caller = await authenticate(request, api_key(request))
    body = text.parse_json_object(request.body)
    convert.check_request(body)
    model = str(body["model"])
    auth.check_model_allowed(caller.key, model)
    tokens = await prompt_tokens(body, model, caller)
    job = MessagesJob(request, caller, body, model, tokens, started)
    return await run_attempts(caller, model, job.attempt, job.prompt_tokens)


# ---------------------------------------------------------------------- routing


def speaks_anthropic(channel_type: int, model: str) -> bool:
    """Whether a channel of this type takes Messages bodies for this (mapped) model."""
    if channel_type == ChannelType.ANTHROPIC:
        return True
    if channel_type == ChannelType.VERTEX_AI:
        return vertex.is_claude(model)
    if channel_type == ChannelType.AWS_CLAUDE:
        try:
            family, _ = aws.bedrock_model(model)
        except UpstreamFailure:
            return False  # the converting path fails this channel over with AWS's reason
        return family is aws.Family.CLAUDE
    return False


@dataclass
class MessagesJob:
    """One Messages request, tried on the channels `run_attempts` picks."""

    request: Request
    caller: Caller
    body: dict[str, Any]
    model: str
    prompt_tokens: int
    started: float
    chat: AttemptFn | None = None  # the converted request's attempt, built on first use

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    async def attempt(self, channel: ChannelInfo) -> Response | StreamResponse:
        actual_model = channel.model_mapping.get(self.model) or self.model
        if speaks_anthropic(channel.type, actual_model):
            return await self.native(channel, actual_model)
        return await self.converted(channel)

    # ------------------------------------------------------------------ conversion

    async def converted(self, channel: ChannelInfo) -> Response | StreamResponse:
        if self.chat is None:
            try:
                payload = convert.to_openai_request(self.body)
            except RelayError as error:
                # Content only Anthropic takes (documents, server tools): another channel
                # may speak Anthropic's API; with none left, the client gets this 400.
                raise UpstreamFailure(error, retryable=True, from_upstream=False) from None
            if self.stream:
                # The usage chunk gives message_delta its counts.
                payload["stream_options"] = {"include_usage": True}
            # Adaptors read the client's body from the request: it must be the chat one.
            chat_request = dataclasses.replace(self.request, body=orjson.dumps(payload))
            self.chat = text.text_attempt(
                chat_request, self.caller, RelayMode.CHAT, payload, self.prompt_tokens, self.started
            )
        response = await self.chat(channel)
        thinking = convert.thinking_enabled(self.body)
        if isinstance(response, StreamResponse):
            events = convert.ChunkEvents(
                model=self.model,
                prompt_tokens=self.prompt_tokens,
                thinking=thinking,
                count=self.counter(),
            )
            frames = converted_frames(response.frames, events)
            return StreamResponse(200, frames, on_close=response.on_close)
        completion = text.parse_result(response.body, response.status)
        return json_response(200, convert.to_anthropic_message(completion, self.model, thinking))

    def counter(self) -> Callable[[str], int]:
        def count(generated: str) -> int:
            return usage.count_text(generated, self.model, self.caller.options)

        return count

    # ------------------------------------------------------------------ native

    async def native(self, channel: ChannelInfo, actual_model: str) -> Response | StreamResponse:
        """The client's body to a channel that speaks Anthropic's API, billed like chat."""
        caller, prompt = self.caller, self.prompt_tokens
        adaptor = channel_adaptor(channel)
        body = OpenAIBody(self.request.body, dict(self.body))
        if actual_model != self.model:
            body.set("model", actual_model)
        if channel.system_prompt:
            body.set("system", channel.system_prompt)  # the channel's forced system prompt
        this_try = Attempt(channel, RelayMode.MESSAGES, actual_model, self.stream, self.request)
        await adaptor.prepare(this_try)
        upstream_call = adaptor.build_request(this_try, body)
        prices = price(caller, actual_model, channel.type)
        max_tokens = self.body.get("max_tokens")
        max_tokens = max_tokens if isinstance(max_tokens, int) else 0
        amount = pricing.pre_consume_quota(prompt, max_tokens, prices.ratio, caller.options)
        estimate = caller.runtime.estimates.for_text(
            actual_model,
            prompt,
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
            request_id=self.request.request_id,
            started=self.started,
            is_stream=self.stream,
            system_prompt_reset=bool(channel.system_prompt),
        )

        def bill(usage_data: Any, generated: str) -> None:
            tokens = usage.tokens_from_usage(usage_data, prompt)
            if tokens is None:
                tokens = (prompt, usage.count_text(generated, actual_model, caller.options))
            quota = pricing.text_quota(*tokens, prices.ratio, prices.completion_ratio)
            caller.runtime.estimates.observe(actual_model, quota)
            charge.settle(quota, tokens[0], tokens[1], prices.text)

        try:
            upstream = await adaptor.send(this_try, upstream_call)
            if self.stream and is_event_stream(upstream):
                translator = adaptor.stream_translator(this_try, False)
                finish = StreamFinisher(upstream, translator, bill)
                frames = native_frames(upstream, translator, finish)
                return StreamResponse(200, frames, on_close=finish)
            raw = await read_body(upstream)
            message = text.parse_result(raw, upstream.status_code)
            body_out = adaptor.translate_response(this_try, raw)
            if body_out is not raw:
                message = orjson.loads(body_out)
        except BaseException:
            charge.release()
            raise
        message_usage = message.get("usage")
        bill(
            anthropic.openai_usage(message_usage) if isinstance(message_usage, dict) else None,
            convert.message_text(message),
        )
        if self.stream:  # the upstream answered a stream request with JSON
            return StreamResponse(200, single(convert.message_events(message)))
        return Response(200, body_out)


# ---------------------------------------------------------------------- streams


def is_event_stream(response: httpx.Response) -> bool:
    return not response.headers.get("content-type", "").startswith("application/json")


async def single(frames: bytes) -> AsyncIterator[bytes]:
    yield frames


async def converted_frames(
    frames: AsyncIterator[bytes], events: convert.ChunkEvents
) -> AsyncIterator[bytes]:
    """The chat relay's chunk frames as Anthropic events. Closing this closes the chat
    stream, whose own cleanup bills it."""
    splitter = LineSplitter()
    try:
        async for frame in frames:
            out = b"".join(events.accept(line) or b"" for line in splitter.feed(frame))
            if out:
                yield out
        tail = b"".join(events.accept(line) or b"" for line in splitter.flush())
        # The chat relay ends every stream with [DONE] or an error frame; just in case.
        yield tail + events.finish()
    finally:
        close = getattr(frames, "aclose", None)
        if close is not None:
            await close()


async def native_frames(
    upstream: httpx.Response, translator: StreamTranslator, finish: StreamFinisher
) -> AsyncIterator[bytes]:
    """Anthropic's events as they come, each once complete; billed in `finally`, which also
    runs when the client disconnects."""
    splitter = LineSplitter()
    accept_bytes = getattr(translator, "accept_bytes", None)  # Bedrock's binary frames
    try:
        try:
            async for chunk in upstream.aiter_bytes():
                if accept_bytes is not None:
                    out = accept_bytes(chunk) or b""
                else:
                    out = b"".join(translator.accept(line) or b"" for line in splitter.feed(chunk))
                if out:
                    yield out
            if accept_bytes is None:
                # The last event may lack its blank line: an empty one completes it.
                lines = [*splitter.flush(), b""]
                out = b"".join(translator.accept(line) or b"" for line in lines)
                if out:
                    yield out
        except httpx.HTTPError as error:
            detail = str(error) or type(error).__name__
            yield convert.error_event("api_error", f"upstream stream interrupted: {detail}")
            return
        if translator.upstream_error is None and not translator.saw_done:
            yield convert.error_event("api_error", "upstream stream ended before message_stop")
    finally:
        await finish()
