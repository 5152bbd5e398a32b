"""AWS Bedrock (channel type 33): Claude and Llama 3 through InvokeModel, signed with SigV4.

One API calls Bedrock through the AWS SDK; here the same calls go out over the relay's HTTP
client: `POST {endpoint}/model/{modelId}/invoke` (or `/invoke-with-response-stream`), signed
with botocore's SigV4 signer for service `bedrock`. Claude takes Anthropic's Messages body
(`anthropic_version: bedrock-2023-05-31` in place of `model`) and answers as Anthropic does;
Llama 3 takes one prompt rendered with Meta's chat template. Streams come back as AWS
event-stream frames whose `chunk` events carry the model's own JSON events in base64.

Credentials are the channel's config fields `ak`, `sk`, `region`, else its key written as
`ak|sk|region` (what One API's channel editor stores). SigV4 derives no token that could be
cached: every request is signed on its own, with the current time.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from channels_mgmt.selection import ChannelInfo
from relay import images
from relay.adaptors import anthropic
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.adaptors.eventstream import EventStreamDecoder, EventStreamError, Message
from relay.adaptors.openai import base_url
from relay.errors import UPSTREAM_ERROR, RelayError
from relay.failures import UpstreamFailure
from relay.modes import RelayMode
from relay.streaming import DONE_FRAME

SERVICE = "bedrock"
EVENT_STREAM = "application/vnd.amazon.eventstream"
BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
METRICS = "amazon-bedrock-invocationMetrics"

# One API's names (aws/claude, aws/llama3) and the Bedrock model ids they stand for.
CLAUDE_MODEL_IDS = {
    "claude-instant-1.2": "anthropic.claude-instant-v1",
    "claude-2.0": "anthropic.claude-v2",
    "claude-2.1": "anthropic.claude-v2:1",
    "claude-3-haiku-20240307": "anthropic.claude-3-haiku-20240307-v1:0",
    "claude-3-sonnet-20240229": "anthropic.claude-3-sonnet-20240229-v1:0",
    "claude-3-opus-20240229": "anthropic.claude-3-opus-20240229-v1:0",
    "claude-3-5-sonnet-20240620": "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "claude-3-5-sonnet-20241022": "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "claude-3-5-sonnet-latest": "anthropic.claude-3-5-sonnet-20241022-v2:0",
    "claude-3-5-haiku-20241022": "anthropic.claude-3-5-haiku-20241022-v1:0",
    "claude-3-7-sonnet-20250219": "anthropic.claude-3-7-sonnet-20250219-v1:0",
    "claude-sonnet-4-20250514": "anthropic.claude-sonnet-4-20250514-v1:0",
    "claude-opus-4-20250514": "anthropic.claude-opus-4-20250514-v1:0",
}
LLAMA_MODEL_IDS = {
    "llama3-8b-8192": "meta.llama3-8b-instruct-v1:0",
    "llama3-70b-8192": "meta.llama3-70b-instruct-v1:0",
}
# A name that already is a Bedrock model id, or a cross-region inference profile id
# (`us.anthropic...`), goes upstream as is. Only Llama 3.x shares Llama 3's prompt template.
BEDROCK_MODEL_ID = re.compile(
    r"^(?:[a-z]{2,6}(?:-gov)?\.)?(?:(?P<claude>anthropic\.claude)|(?P<llama>meta\.llama3))"
    r"[\w.:-]*$"
)

# Bedrock's documented ranges; OpenAI clients send temperature up to 2.
CLAUDE_RANGES = {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0), "top_k": (0, 500)}
LLAMA_RANGES = {"temperature": (0.0, 1.0), "top_p": (0.0, 1.0)}
LLAMA_MAX_GEN_LEN = 2048  # Bedrock's maximum, and One API's default
# Anthropic body fields Bedrock refuses as "extraneous key".
NOT_ON_BEDROCK = ("model", "stream", "metadata")
LLAMA_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
LLAMA_FINISH_REASONS = {"stop": "stop", "length": "length"}


class Family(enum.Enum):
    CLAUDE = "claude"
    LLAMA = "llama"


def unsupported(message: str, code: str = "unsupported_mode") -> RelayError:
    return RelayError(400, message, code=code)


# ---------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class AwsKey:
    access_key: str
    secret_key: str
    region: str


def channel_key(channel: ChannelInfo) -> AwsKey:
    """The config fields win; the key `ak|sk|region` fills in what they leave out."""
    parts = [part.strip() for part in channel.key.split("|")] if channel.key else []
    from_key = parts if len(parts) == 3 else ["", "", ""]
    values = []
    for name, fallback in zip(("ak", "sk", "region"), from_key, strict=True):
        value = channel.config.get(name)
        values.append(value.strip() if isinstance(value, str) and value.strip() else fallback)
    if not all(values):
        # The channel is misconfigured, not the request: let another channel serve it.
        raise UpstreamFailure(
            RelayError(
                500,
                f"AWS channel #{channel.id} needs an access key, a secret key and a region "
                "(config fields ak, sk, region, or the key as ak|sk|region)",
                code="invalid_channel_config",
            ),
            retryable=True,
            from_upstream=False,
        )
    return AwsKey(*values)


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    key: AwsKey,
    service: str = SERVICE,
) -> dict[str, str]:
    """The headers to send: the given ones plus X-Amz-Date and the SigV4 Authorization."""
    # Imported here: botocore adds ~27 MB to every server process, and only AWS channels sign.
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    credentials = Credentials(key.access_key, key.secret_key)
    SigV4Auth(credentials, service, key.region).add_auth(request)
    return dict(request.headers.items())


def endpoint(attempt: Attempt, region: str) -> str:
    return base_url(attempt) or f"https://bedrock-runtime.{region}.amazonaws.com"


def invoke_url(attempt: Attempt, region: str, model_id: str) -> str:
    action = "invoke-with-response-stream" if attempt.stream else "invoke"
    # ':' stays as is: HTTP clients normalise %3A back to ':' on the wire, and the signature
    # must cover the path actually sent. '/' (in ARNs) must stay encoded.
    return f"{endpoint(attempt, region)}/model/{quote(model_id, safe=':')}/{action}"


# ---------------------------------------------------------------------- models


def bedrock_model(model: str) -> tuple[Family, str]:
    """(family, Bedrock model id) for a model name after the channel's mapping."""
    if model in CLAUDE_MODEL_IDS:
        return Family.CLAUDE, CLAUDE_MODEL_IDS[model]
    if model in LLAMA_MODEL_IDS:
        return Family.LLAMA, LLAMA_MODEL_IDS[model]
    # An inference-profile ARN names the model after its last '/'.
    match = BEDROCK_MODEL_ID.match(model.rsplit("/", 1)[-1] if model.startswith("arn:") else model)
    if match:
        return (Family.CLAUDE if match["claude"] else Family.LLAMA), model
    # Another channel type may well serve this name: not this channel's fault, try the next.
    raise UpstreamFailure(
        RelayError(
            400,
            f"model {model} is not supported by channel type AWS (Claude and Llama 3 only)",
            code="model_not_supported",
        ),
        retryable=True,
        from_upstream=False,
    )


def clamp(payload: dict[str, Any], ranges: dict[str, tuple[float, float]]) -> None:
    for name, (low, high) in ranges.items():
        value = payload.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            payload[name] = type(low)(min(max(value, low), high))


def check_single_choice(payload: dict[str, Any]) -> None:
    n = payload.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        raise unsupported("n > 1 is not supported by channel type AWS", "unsupported_parameter")


# ---------------------------------------------------------------------- Claude


def inline_url_images(blocks: Any) -> bool:
    """Replace URL image sources by the prefetched bytes; True if one could not be."""
    unfetched = False
    for block in blocks if isinstance(blocks, list) else ():
        if not isinstance(block, dict):
            continue
        source = block.get("source")
        if (
            block.get("type") == "image"
            and isinstance(source, dict)
            and source.get("type") == "url"
        ):
            image = images.inlined(str(source.get("url") or ""))
            if image is None:
                unfetched = True
            else:
                block["source"] = {
                    "type": "base64",
                    "media_type": image.media_type,
                    "data": image.data,
                }
        if block.get("type") == "tool_result" and inline_url_images(block.get("content")):
            unfetched = True
    return unfetched


def claude_body(payload: dict[str, Any], beta: str = "") -> dict[str, Any]:
    """Anthropic's Messages body as Bedrock's Claude takes it."""
    check_single_choice(payload)
    body = anthropic.convert_request(payload, "")
    for name in NOT_ON_BEDROCK:
        body.pop(name, None)
    # Bedrock's Claude fetches nothing: images come inline, http(s) ones fetched by
    # `prepare` (as One API downloads them); a body built without it keeps the refusal.
    unfetched = [inline_url_images(m["content"]) for m in body["messages"]]
    if any(unfetched) or inline_url_images(body.get("system")):
        raise RelayError(
            400,
            "channel type AWS takes images as base64 data: URLs only, not http(s) URLs",
            code="invalid_image_url",
        )
    clamp(body, CLAUDE_RANGES)
    betas = [item.strip() for item in beta.split(",") if item.strip()]
    if betas:
        body["anthropic_beta"] = betas  # Bedrock's place for the anthropic-beta header
    return {"anthropic_version": BEDROCK_ANTHROPIC_VERSION, **body}


def native_claude_body(payload: dict[str, Any], beta: str = "") -> dict[str, Any]:
    """A Messages API client's own body (RelayMode.MESSAGES) as Bedrock's Claude takes it:
    Bedrock's version in place of the model, the fields it refuses left out."""
    body = {name: value for name, value in payload.items() if name not in NOT_ON_BEDROCK}
    betas = [item.strip() for item in beta.split(",") if item.strip()]
    if betas:
        body["anthropic_beta"] = betas
    return {"anthropic_version": BEDROCK_ANTHROPIC_VERSION, **body}


def claude_response(message: dict[str, Any], model: str) -> dict[str, Any]:
    converted = anthropic.convert_response(message, model)
    converted["model"] = model  # Bedrock echoes Anthropic's name; the client gets its own
    return converted


# ---------------------------------------------------------------------- Llama


def llama_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return str(content)
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            texts.append(str(part.get("text") or ""))
        elif isinstance(part, dict):
            raise RelayError(
                400,
                f"content part type {part.get('type')!r} is not supported by Llama on AWS",
                code="unsupported_content",
            )
    return "\n".join(texts)


def llama_prompt(messages: list[Any]) -> str:
    """Meta's Llama 3 chat template, ending with the assistant's header for it to answer."""
    prompt = ["<|begin_of_text|>"]
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("tool", "function") or message.get("tool_calls"):
            raise unsupported("tool calls are not supported by Llama on AWS", "unsupported_tools")
        if role not in LLAMA_ROLES:
            raise RelayError(400, f"unknown message role {role!r}", code="invalid_role")
        text = llama_text(message.get("content")).strip()
        prompt.append(
            f"<|start_header_id|>{LLAMA_ROLES[role]}<|end_header_id|>\n\n{text}<|eot_id|>"
        )
    prompt.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(prompt)


def llama_body(payload: dict[str, Any]) -> dict[str, Any]:
    check_single_choice(payload)
    if (payload.get("tools") or payload.get("functions")) and payload.get("tool_choice") != "none":
        raise unsupported("tools are not supported by Llama on AWS", "unsupported_tools")
    if anthropic.stop_sequences(payload.get("stop")):
        raise unsupported("stop sequences are not supported by Llama on AWS", "unsupported_stop")
    messages = payload.get("messages") if isinstance(payload.get("messages"), list) else []
    max_tokens = payload.get("max_tokens") or payload.get("max_completion_tokens")
    max_gen_len = max_tokens if isinstance(max_tokens, int) else LLAMA_MAX_GEN_LEN
    body: dict[str, Any] = {
        "prompt": llama_prompt(messages),
        "max_gen_len": min(max(max_gen_len, 1), LLAMA_MAX_GEN_LEN),
    }
    for name in LLAMA_RANGES:
        if payload.get(name) is not None:
            body[name] = payload[name]
    clamp(body, LLAMA_RANGES)
    return body


def openai_usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def llama_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    prompt, completion = data.get("prompt_token_count"), data.get("generation_token_count")
    response: dict[str, Any] = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": str(data.get("generation") or "")},
                "logprobs": None,
                "finish_reason": LLAMA_FINISH_REASONS.get(data.get("stop_reason"), "stop"),
            }
        ],
    }
    if isinstance(prompt, int) and isinstance(completion, int):
        response["usage"] = openai_usage(prompt, completion)
    return response


# ---------------------------------------------------------------------- stream


def metrics_usage(metrics: Any) -> dict[str, int] | None:
    """Bedrock's own count, sent with the last chunk of every model."""
    if not isinstance(metrics, dict):
        return None
    prompt, completion = metrics.get("inputTokenCount"), metrics.get("outputTokenCount")
    if isinstance(prompt, int) and isinstance(completion, int):
        return openai_usage(prompt, completion)
    return None


def chunk_event(payload: bytes) -> dict[str, Any] | None:
    """The model's JSON event inside a `chunk` message: `{"bytes": "<base64>"}`."""
    try:
        envelope = orjson.loads(payload)
        event = orjson.loads(base64.b64decode(envelope["bytes"], validate=True))
    except (orjson.JSONDecodeError, binascii.Error, KeyError, TypeError):
        return None
    return event if isinstance(event, dict) else None


def stream_error(message: Message) -> dict[str, Any]:
    """An `exception` (throttlingException, modelStreamErrorException, ...) or `error`
    message in OpenAI's error shape."""
    text = ""
    try:
        data = orjson.loads(message.payload) if message.payload else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        text = str(data.get("message") or data.get("Message") or "")
    kind = message.exception_type or message.headers.get(":error-code")
    text = text or str(message.headers.get(":error-message") or "")
    return {
        "message": text or f"AWS stream error {kind or ''}".strip(),
        "type": str(kind or UPSTREAM_ERROR),
        "param": None,
        "code": None,
    }


def error_frame(error: dict[str, Any]) -> bytes:
    return anthropic.sse({"error": error})


class ModelEvents(Protocol):
    """One model family's stream events (already unwrapped) in, OpenAI frames out."""

    usage: dict[str, Any] | None
    saw_done: bool
    upstream_error: dict[str, Any] | None

    def chunk(self, event: dict[str, Any]) -> bytes | None: ...

    @property
    def generated_text(self) -> str: ...


class ClaudeEvents(anthropic.AnthropicStream):
    """Anthropic's events, with Bedrock's invocation metrics as the fallback count."""

    def chunk(self, event: dict[str, Any]) -> bytes | None:
        kind = event.get("type")
        message = event.get("message")
        if kind == "message_start" and isinstance(message, dict):
            event = {**event, "message": {k: v for k, v in message.items() if k != "model"}}
        if kind == "message_stop" and self.usage is None:
            self.usage = metrics_usage(event.get(METRICS))
        return self.accept(b"data: " + orjson.dumps(event))


@dataclass
class LlamaEvents:
    """Llama's `{generation, prompt_token_count, generation_token_count, stop_reason}`
    chunks; the one with a stop_reason is the last."""

    client_wants_usage: bool
    model: str
    usage: dict[str, Any] | None = None
    saw_done: bool = False
    upstream_error: dict[str, Any] | None = None
    generated: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    prompt_tokens: int | None = None
    completion_tokens: int | None = None  # cumulative in every chunk
    started: bool = False

    @property
    def generated_text(self) -> str:
        return "".join(self.generated)

    def chunk(self, event: dict[str, Any]) -> bytes | None:
        frames = b""
        if not self.started:
            self.started = True
            frames += self._chunk({"role": "assistant", "content": ""})
        if isinstance(event.get("prompt_token_count"), int):
            self.prompt_tokens = event["prompt_token_count"]
        if isinstance(event.get("generation_token_count"), int):
            self.completion_tokens = event["generation_token_count"]
        text = event.get("generation")
        if isinstance(text, str) and text:
            self.generated.append(text)
            frames += self._chunk({"content": text})
        stop_reason = event.get("stop_reason")
        if isinstance(stop_reason, str) and stop_reason:
            frames += self._finish(stop_reason, metrics_usage(event.get(METRICS)))
        return frames or None

    def _envelope(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return anthropic.sse(self._envelope([choice]))

    def _finish(self, stop_reason: str, metrics: dict[str, int] | None) -> bytes:
        frames = self._chunk({}, LLAMA_FINISH_REASONS.get(stop_reason, "stop"))
        if self.prompt_tokens is not None and self.completion_tokens is not None:
            self.usage = openai_usage(self.prompt_tokens, self.completion_tokens)
        else:
            self.usage = metrics
        if self.usage is not None and self.client_wants_usage:
            frames += anthropic.sse({**self._envelope([]), "usage": self.usage})
        self.saw_done = True
        return frames + DONE_FRAME


@dataclass
class ClaudePassthrough(anthropic.AnthropicPassthrough):
    """Claude's events for a Messages API client, as Anthropic writes them: the client's model
    name in message_start, Bedrock's invocation metrics only as the fallback count."""

    model: str = ""

    def chunk(self, event: dict[str, Any]) -> bytes | None:
        metrics = event.get(METRICS)
        event = {name: value for name, value in event.items() if name != METRICS}
        message = event.get("message")
        if event.get("type") == "message_start" and isinstance(message, dict):
            event["message"] = {**message, "model": self.model}
        self.observe(event)
        if self.saw_done and self.usage is None:
            self.usage = metrics_usage(metrics)
        return anthropic.event_frame(event)


class BedrockStream:
    """Event-stream bytes in, OpenAI chunks out: whole frames are decoded, each `chunk`
    event's JSON goes to the model family's handler, exceptions become an error frame."""

    def __init__(self, events: ModelEvents) -> None:
        self.events = events
        self.decoder = EventStreamDecoder()
        self.stopped = False

    @property
    def usage(self) -> dict[str, Any] | None:
        return self.events.usage

    @property
    def saw_done(self) -> bool:
        return self.events.saw_done

    @property
    def upstream_error(self) -> dict[str, Any] | None:
        return self.events.upstream_error

    @property
    def generated_text(self) -> str:
        return self.events.generated_text

    def accept_bytes(self, chunk: bytes) -> bytes | None:
        if self.stopped:
            return None
        try:
            messages = self.decoder.feed(chunk)
        except EventStreamError as error:
            return self._fail(
                {
                    "message": f"malformed event stream from AWS: {error}",
                    "type": UPSTREAM_ERROR,
                    "param": None,
                    "code": "bad_event_stream",
                }
            )
        frames = b""
        for message in messages:
            frames += self._message(message) or b""
            if self.stopped:
                break
        return frames or None

    def accept(self, line: bytes) -> bytes | None:
        """For a relay that splits lines: it took off one b"\\n", given back here. Any b"\\r"
        it stripped before it is lost (and the frame's CRC then fails): the relay feeds
        `accept_bytes` instead whenever a translator has it."""
        return self.accept_bytes(line + b"\n")

    def _message(self, message: Message) -> bytes | None:
        if message.message_type in ("exception", "error"):
            return self._fail(stream_error(message))
        if message.event_type != "chunk":
            return None
        event = chunk_event(message.payload)
        frames = self.events.chunk(event) if event is not None else None
        self.stopped = self.events.saw_done or self.events.upstream_error is not None
        return frames

    def _fail(self, error: dict[str, Any]) -> bytes:
        self.stopped = True
        self.events.upstream_error = error
        return error_frame(error)


class NativeBedrockStream(BedrockStream):
    """For Messages API clients: AWS's exceptions as Anthropic's `error` event."""

    def _fail(self, error: dict[str, Any]) -> bytes:
        self.stopped = True
        self.events.upstream_error = error
        kind = "rate_limit_error" if error.get("type") == "throttlingException" else "api_error"
        return anthropic.event_frame(
            {"type": "error", "error": {"type": kind, "message": error.get("message")}}
        )


# ---------------------------------------------------------------------- adaptor


class AwsAdaptor(Adaptor):
    async def prepare(self, attempt: Attempt) -> None:
        if attempt.mode is RelayMode.CHAT and bedrock_model(attempt.model)[0] is Family.CLAUDE:
            await images.prefetch_chat_images(attempt.request)

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        native = attempt.mode is RelayMode.MESSAGES
        if attempt.mode is not RelayMode.CHAT and not native:
            raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type AWS")
        key = channel_key(attempt.channel)
        family, model_id = bedrock_model(attempt.model)
        if native and family is not Family.CLAUDE:
            raise unsupported("only Claude takes Messages API bodies on channel type AWS")
        if native:
            payload = native_claude_body(body.payload, attempt.request.header("anthropic-beta"))
        elif family is Family.CLAUDE:
            with images.inlining(attempt.request):
                payload = claude_body(body.payload, attempt.request.header("anthropic-beta"))
        else:
            payload = llama_body(body.payload)
        content = orjson.dumps(payload)
        url = invoke_url(attempt, key.region, model_id)
        # The AWS SDK's headers: the stream operation names the model's own answer type in
        # X-Amzn-Bedrock-Accept, its Accept being the event stream.
        headers = {"Content-Type": "application/json"}
        if attempt.stream:
            headers |= {"Accept": EVENT_STREAM, "X-Amzn-Bedrock-Accept": "application/json"}
        else:
            headers["Accept"] = "application/json"
        return UpstreamRequest("POST", url, sign("POST", url, headers, content, key), content)

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(f"{attempt.mode.upstream_path} is not supported by channel type AWS")

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        if attempt.mode is RelayMode.MESSAGES:
            # Claude's answer as it is, but with the client's model name, not Anthropic's.
            return orjson.dumps({**data, "model": attempt.model})
        family, _ = bedrock_model(attempt.model)
        if family is Family.CLAUDE:
            return orjson.dumps(claude_response(data, attempt.model))
        return orjson.dumps(llama_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        if attempt.mode is RelayMode.MESSAGES:
            return NativeBedrockStream(ClaudePassthrough(model=attempt.model))
        family, _ = bedrock_model(attempt.model)
        events: ModelEvents
        if family is Family.CLAUDE:
            events = ClaudeEvents(client_wants_usage=client_wants_usage, model=attempt.model)
        else:
            events = LlamaEvents(client_wants_usage=client_wants_usage, model=attempt.model)
        return BedrockStream(events)
