"""Google Vertex AI: Gemini and Claude models behind a service account's OAuth token.

The channel's key (or its `vertex_ai_adc` config) is a service-account JSON. Its private key
signs a JWT (RS256) that Google's token endpoint trades for a one-hour access token, cached
per channel and refreshed well before it expires, one exchange at a time. Gemini models speak
the Gemini wire format at `publishers/google/models/{m}:generateContent`; Claude models speak
Anthropic's Messages format at `publishers/anthropic/models/{m}:rawPredict`. Both conversions
are the Gemini and Anthropic adaptors' own; embeddings use Vertex's `:predict`.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import time
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from relay import images
from relay.adaptors import anthropic, gemini
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody, StreamTranslator, UpstreamRequest
from relay.errors import RelayError
from relay.failures import UpstreamFailure, failure_from_exception
from relay.modes import RelayMode
from relay.upstream import get_client

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_LIFETIME = 3600  # Google's maximum for a service-account assertion
# Google's tokens live an hour; using one for 50 minutes leaves ten for requests in flight.
REFRESH_MARGIN = 600
DEFAULT_TOKEN_LIFETIME = 3600
DEFAULT_REGION = "us-central1"
ANTHROPIC_VERSION = "vertex-2023-10-16"
EXTENSION = "vertex_ai"  # the UpstreamRequest extension carrying what `send` needs


def unsupported(message: str) -> RelayError:
    return RelayError(400, message, code="unsupported_mode")


def config_failure(message: str) -> UpstreamFailure:
    """A channel set up wrongly: not the client's fault, and another channel may work."""
    return UpstreamFailure(
        RelayError(500, message, code="invalid_channel_config"),
        retryable=True,
        from_upstream=False,
    )


# ---------------------------------------------------------------------- service account


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    private_key: str  # PEM
    private_key_id: str
    token_uri: str
    project_id: str

    @property
    def fingerprint(self) -> str:
        """Tells a changed key apart from the cached one without keeping the key around."""
        material = f"{self.client_email}\n{self.private_key_id}\n{self.private_key}\n"
        return hashlib.sha256((material + self.token_uri).encode()).hexdigest()[:16]


def parse_service_account(raw: str) -> ServiceAccount:
    """The fields of a service-account key file; ValueError says what is missing."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError("the Vertex AI credentials are not a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("the Vertex AI credentials are not a JSON object")
    missing = [name for name in ("client_email", "private_key") if not data.get(name)]
    if missing:
        raise ValueError(f"the Vertex AI service-account JSON lacks {', '.join(missing)}")
    return ServiceAccount(
        client_email=str(data["client_email"]),
        private_key=str(data["private_key"]),
        private_key_id=str(data.get("private_key_id") or ""),
        token_uri=str(data.get("token_uri") or DEFAULT_TOKEN_URI),
        project_id=str(data.get("project_id") or ""),
    )


@functools.lru_cache(maxsize=64)
def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """Parsing a PEM key costs far more than signing with it: once per key."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the service-account private key is not an RSA key")
    return key


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_rs256(key: rsa.RSAPrivateKey, signing_input: bytes) -> bytes:
    """RS256 (RFC 7518 §3.3): RSASSA-PKCS1-v1_5 with SHA-256."""
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


def service_account_jwt(account: ServiceAccount, now: int) -> str:
    """The assertion of Google's "OAuth 2.0 for server to server applications" flow."""
    header: dict[str, str] = {"alg": "RS256", "typ": "JWT"}
    if account.private_key_id:
        header["kid"] = account.private_key_id
    claims = {
        "iss": account.client_email,
        "scope": SCOPE,
        "aud": account.token_uri,
        "iat": now,
        "exp": now + JWT_LIFETIME,
    }
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}".encode()
    signature = sign_rs256(load_private_key(account.private_key), signing_input)
    return f"{signing_input.decode()}.{b64url(signature)}"


def credentials_text(attempt: Attempt) -> str:
    adc = attempt.channel.config.get("vertex_ai_adc")
    if isinstance(adc, str) and adc.strip():
        return adc
    return attempt.channel.key


def channel_account(attempt: Attempt) -> ServiceAccount:
    try:
        account = parse_service_account(credentials_text(attempt))
        load_private_key(account.private_key)
    except ValueError as error:
        raise config_failure(f"invalid Vertex AI credentials: {error}") from None
    return account


# ---------------------------------------------------------------------- token exchange


def token_error_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    error = data.get("error")
    if isinstance(error, dict):  # Google's API error shape
        return str(error.get("message") or error.get("status") or error)
    description = data.get("error_description")
    return ": ".join(str(part) for part in (error, description) if part) or "no reason given"


def token_failure(status: int, body: bytes) -> UpstreamFailure:
    """A refused exchange means the channel's key is bad (401 lets the monitor disable the
    channel); a server error at Google is just a failed attempt."""
    message = f"Vertex AI token exchange failed ({status}): {token_error_message(body)}"
    if 400 <= status < 500:
        error = RelayError(401, message, type="authentication_error", code="vertex_ai_token")
    else:
        error = RelayError(status, message, code="vertex_ai_token")
    return UpstreamFailure(error, retryable=True)


async def exchange_token(account: ServiceAccount) -> tuple[str, int]:
    """(access token, lifetime in seconds) for a freshly signed assertion."""
    assertion = service_account_jwt(account, int(time.time()))
    content = urlencode({"grant_type": GRANT_TYPE, "assertion": assertion}).encode()
    headers = {"content-type": "application/x-www-form-urlencoded", "accept": "application/json"}
    try:
        response = await get_client().post(account.token_uri, content=content, headers=headers)
    except httpx.HTTPError as error:
        raise failure_from_exception(error) from error
    if response.status_code != 200:
        raise token_failure(response.status_code, response.content)
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    token = data.get("access_token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise token_failure(502, b'{"error": "no access_token in the token response"}')
    lifetime = data.get("expires_in") if isinstance(data, dict) else None
    return token, lifetime if isinstance(lifetime, int) and lifetime > 0 else DEFAULT_TOKEN_LIFETIME


@dataclass
class CachedToken:
    token: str
    refresh_at: float  # monotonic; served until then, replaced after


Fetch = Callable[[], Awaitable[tuple[str, int]]]


@dataclass
class TokenCache:
    """Access tokens per channel (and per key, so an edited key is never served a stale
    token). One exchange at a time per channel: concurrent requests of an event loop wait
    for the exchange in flight and share its token."""

    clock: Callable[[], float] = time.monotonic
    margin: float = REFRESH_MARGIN
    entries: dict[Hashable, CachedToken] = field(default_factory=dict)
    locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, asyncio.Lock]] = (
        field(default_factory=weakref.WeakKeyDictionary)
    )

    def cached(self, key: Hashable) -> str | None:
        entry = self.entries.get(key)
        if entry is None or self.clock() >= entry.refresh_at:
            return None
        return entry.token

    async def get(self, key: Hashable, fetch: Fetch) -> str:
        token = self.cached(key)
        if token is not None:
            return token
        async with self._lock(key):
            token = self.cached(key)  # refreshed while this request waited
            if token is not None:
                return token
            token, lifetime = await fetch()
            # A short-lived token is refreshed halfway through its life instead.
            margin = min(self.margin, lifetime / 2)
            self.entries[key] = CachedToken(token, self.clock() + lifetime - margin)
            return token

    def invalidate(self, key: Hashable, token: str) -> None:
        """Forget `token` (Google refused it), unless a newer one replaced it already."""
        entry = self.entries.get(key)
        if entry is not None and entry.token == token:
            del self.entries[key]

    def _lock(self, key: Hashable) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        locks = self.locks.setdefault(loop, {})
        lock = locks.get(key)
        if lock is None:
            lock = locks[key] = asyncio.Lock()
        return lock


TOKENS = TokenCache()


# ---------------------------------------------------------------------- URLs


def is_claude(model: str) -> bool:
    return model.startswith("claude")


def project_id(attempt: Attempt, account: ServiceAccount) -> str:
    configured = attempt.channel.config.get("vertex_ai_project_id")
    project = configured if isinstance(configured, str) and configured else account.project_id
    if not project:
        raise config_failure("the Vertex AI channel has no project id (vertex_ai_project_id)")
    return project


def region(attempt: Attempt) -> str:
    configured = attempt.channel.config.get("region")
    if isinstance(configured, str) and configured.strip():
        return configured.strip()
    return DEFAULT_REGION


def endpoint_root(attempt: Attempt, location: str) -> str:
    """The channel's base URL when set (a proxy, the tests' fake), else the regional host;
    the `global` location has a host without a region prefix."""
    base = attempt.channel.base_url.rstrip("/").removesuffix("/v1")
    if base:
        return base
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def model_url(attempt: Attempt, account: ServiceAccount, action: str) -> str:
    location = region(attempt)
    publisher = "anthropic" if is_claude(attempt.model) else "google"
    return (
        f"{endpoint_root(attempt, location)}/v1/projects/{project_id(attempt, account)}"
        f"/locations/{location}/publishers/{publisher}/models/{attempt.model}:{action}"
    )


def chat_action(model: str, stream: bool) -> str:
    if is_claude(model):
        return "streamRawPredict" if stream else "rawPredict"
    return "streamGenerateContent?alt=sse" if stream else "generateContent"


# ---------------------------------------------------------------------- bodies


def claude_request(payload: dict[str, Any], model: str) -> dict[str, Any]:
    """Anthropic's Messages body as Vertex wants it: the model is in the URL, not the body."""
    request = anthropic.convert_request(payload, model)
    request.pop("model", None)
    request["anthropic_version"] = ANTHROPIC_VERSION
    temperature = request.get("temperature")
    if isinstance(temperature, int | float):
        # OpenAI allows up to 2, Claude refuses anything above 1.
        request["temperature"] = min(max(temperature, 0.0), 1.0)
    return request


def native_claude_request(payload: dict[str, Any]) -> dict[str, Any]:
    """A Messages API client's own body (RelayMode.MESSAGES) as Vertex takes it: the model
    in the URL, Vertex's anthropic_version in the body, nothing else changed."""
    request = {name: value for name, value in payload.items() if name != "model"}
    request["anthropic_version"] = ANTHROPIC_VERSION
    return request


def embedding_texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    raise RelayError(
        400,
        "channel type Vertex AI embeds strings only, not token arrays",
        code="unsupported_content",
    )


def embedding_request(payload: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI embeddings request as a Vertex text-embedding `:predict` body."""
    request: dict[str, Any] = {
        "instances": [{"content": text} for text in embedding_texts(payload.get("input"))]
    }
    dimensions = payload.get("dimensions")
    if isinstance(dimensions, int) and dimensions > 0:
        request["parameters"] = {"outputDimensionality": dimensions}
    return request


def embedding_response(data: dict[str, Any], model: str, encoding_format: Any) -> dict[str, Any]:
    """Vertex predictions as an OpenAI list; usage from the per-text token statistics."""
    items = []
    tokens = 0
    counted = False
    for index, prediction in enumerate(data.get("predictions") or ()):
        embeddings = prediction.get("embeddings") if isinstance(prediction, dict) else None
        embeddings = embeddings if isinstance(embeddings, dict) else {}
        values = embeddings.get("values")
        statistics = embeddings.get("statistics")
        count = statistics.get("token_count") if isinstance(statistics, dict) else None
        if isinstance(count, int | float):
            tokens += int(count)
            counted = True
        items.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": gemini.encode_embedding(
                    values if isinstance(values, list) else [], encoding_format
                ),
            }
        )
    result: dict[str, Any] = {"object": "list", "data": items, "model": model}
    if counted:
        result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return result


# ---------------------------------------------------------------------- adaptor


@dataclass(frozen=True)
class TokenTicket:
    """What `send` needs to authorise a request built by `build_request`."""

    cache_key: tuple[int, str]
    account: ServiceAccount


def with_token(call: UpstreamRequest, token: str) -> UpstreamRequest:
    headers = {**call.headers, "authorization": f"Bearer {token}"}
    return UpstreamRequest(call.method, call.url, headers, call.content, call.extensions)


class VertexAIAdaptor(Adaptor):
    def __init__(self, tokens: TokenCache | None = None) -> None:
        self.tokens = tokens or TOKENS

    async def prepare(self, attempt: Attempt) -> None:
        if attempt.mode is RelayMode.CHAT and not is_claude(attempt.model):
            await images.prefetch_chat_images(attempt.request)  # Gemini takes bytes

    def build_request(self, attempt: Attempt, body: OpenAIBody) -> UpstreamRequest:
        account = channel_account(attempt)
        claude = is_claude(attempt.model)
        if attempt.mode is RelayMode.CHAT:
            with images.inlining(attempt.request):
                payload = (
                    claude_request(body.payload, attempt.model)
                    if claude
                    else gemini.convert_request(body.payload)
                )
            action = chat_action(attempt.model, attempt.stream)
        elif attempt.mode is RelayMode.MESSAGES and claude:
            payload = native_claude_request(body.payload)
            action = chat_action(attempt.model, attempt.stream)
        elif attempt.mode is RelayMode.EMBEDDINGS and not claude:
            payload = embedding_request(body.payload)
            action = "predict"
        else:
            raise unsupported(
                f"{attempt.mode.upstream_path} is not supported by channel type Vertex AI"
                + (" for Claude models" if claude else "")
            )
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if attempt.stream else "application/json",
        }
        beta = attempt.request.header("anthropic-beta")
        if claude and beta:
            headers["anthropic-beta"] = beta
        ticket = TokenTicket((attempt.channel.id, account.fingerprint), account)
        return UpstreamRequest(
            "POST",
            model_url(attempt, account, action),
            headers,
            orjson.dumps(payload),
            {EXTENSION: ticket},
        )

    def build_raw_request(
        self, attempt: Attempt, content: bytes, content_type: str
    ) -> UpstreamRequest:
        raise unsupported(
            f"{attempt.mode.upstream_path} is not supported by channel type Vertex AI"
        )

    async def send(self, attempt: Attempt, call: UpstreamRequest) -> httpx.Response:
        """Authorise with the channel's cached token; a token Google no longer accepts
        (revoked, or the clocks disagree) is replaced once and the request sent again."""
        from relay.transport import send_upstream  # imported late: transport imports adaptors

        ticket: TokenTicket = call.extensions[EXTENSION]
        outgoing = UpstreamRequest(call.method, call.url, call.headers, call.content)

        async def fetch() -> tuple[str, int]:
            return await exchange_token(ticket.account)

        token = await self.tokens.get(ticket.cache_key, fetch)
        try:
            return await send_upstream(with_token(outgoing, token))
        except UpstreamFailure as failure:
            if failure.error.status != 401:
                raise
            self.tokens.invalidate(ticket.cache_key, token)
        token = await self.tokens.get(ticket.cache_key, fetch)
        return await send_upstream(with_token(outgoing, token))

    def translate_response(self, attempt: Attempt, body: bytes) -> bytes:
        if attempt.mode is RelayMode.MESSAGES:
            return body  # Claude's own answer to a Messages API client
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(data, dict):
            return body
        if attempt.mode is RelayMode.EMBEDDINGS:
            encoding = gemini.client_payload(attempt).get("encoding_format")
            return orjson.dumps(embedding_response(data, attempt.model, encoding))
        if is_claude(attempt.model):
            return orjson.dumps(anthropic.convert_response(data, attempt.model))
        return orjson.dumps(gemini.convert_response(data, attempt.model))

    def stream_translator(self, attempt: Attempt, client_wants_usage: bool) -> StreamTranslator:
        if attempt.mode is RelayMode.MESSAGES:
            return anthropic.AnthropicPassthrough()
        if is_claude(attempt.model):
            return anthropic.AnthropicStream(
                client_wants_usage=client_wants_usage, model=attempt.model
            )
        n = gemini.client_payload(attempt).get("n")
        return gemini.GeminiStream(
            client_wants_usage=client_wants_usage,
            model=attempt.model,
            candidates=n if isinstance(n, int) and n > 1 else 1,
        )
