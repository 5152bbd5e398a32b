from __future__ import annotations

import asyncio
import base64
import functools
import json
import secrets
import string
import time
from typing import Any

from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.fakes.anthropic_upstream import InvalidRequest
from tests.fakes.anthropic_upstream import validate as validate_messages
from tests.fakes.gemini_upstream import InvalidArgument, gemini_vector, validate_generate
from tests.fakes.server import FakeServer, RecordedRequest, json_response

# A fake Google Vertex AI: the OAuth token endpoint of a service account and the Vertex
# prediction endpoints of Gemini and Claude models, over real HTTP.
#
#     with FakeVertex(project_id="fake-project", region="us-east5") as fake:
#         key_json = json.dumps(fake.service_account())  # its token_uri is the fake's
#         ...  # a Vertex channel with that key and fake.base_url as its base URL
#         assert fake.token_requests == 1
#
# The token endpoint is as strict as oauth2.googleapis.com about the JWT-bearer grant: the
# grant type, an RS256 assertion whose signature verifies with the service account's public
# key, `iss`, `aud` (the token URI), the cloud-platform scope and an `exp` at most an hour
# after `iat`. It answers `{"access_token", "expires_in", "token_type"}` or OAuth's
# `{"error", "error_description"}`. The model endpoints want one of its live tokens
# (401 UNAUTHENTICATED otherwise), the right project and region, and:
#   publishers/google/models/{m}:generateContent | :streamGenerateContent[?alt=sse] |
#       :predict (text embeddings), Gemini's wire format (checked by the Gemini fake's rules);
#   publishers/anthropic/models/{m}:rawPredict | :streamRawPredict, Anthropic's Messages body
#       with `anthropic_version: "vertex-2023-10-16"` and without `model`.
# This module also holds `rand_id` and `split_text`, which the PaLM, Ollama, Cohere and
# Responses fakes share.

__all__ = [
    "ANTHROPIC_VERSION",
    "CLAUDE_MODELS",
    "EMBEDDING_MODELS",
    "GEMINI_MODELS",
    "FakeVertex",
    "RecordedRequest",
    "service_account_key",
]

ANTHROPIC_VERSION = "vertex-2023-10-16"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
GEMINI_MODELS = frozenset({"gemini-1.5-flash-002", "gemini-1.5-pro-002", "gemini-2.0-flash-001"})
CLAUDE_MODELS = frozenset({"claude-3-5-sonnet-v2@20241022", "claude-3-5-haiku@20241022"})
EMBEDDING_MODELS = frozenset({"text-embedding-005", "text-multilingual-embedding-002"})
ERROR_SCENARIOS = frozenset({"error_429", "error_500"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "max_tokens", "error_mid_stream"}
_ID_ALPHABET = string.ascii_letters + string.digits


# ---------------------------------------------------------------------- shared helpers


def rand_id(length: int = 24) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def split_text(text: str, pieces: int = 3) -> list[str]:
    size = max(1, -(-len(text) // pieces))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# ---------------------------------------------------------------------- service accounts


@functools.lru_cache(maxsize=4)
def service_account_key(slot: int = 0) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key per slot, generated once per test run (generation is slow)."""
    del slot  # only tells the cached keys apart
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_key_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "status": status}}


UNAUTHENTICATED = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)


# ---------------------------------------------------------------------- the fake


class FakeVertex(FakeServer[RecordedRequest]):
    scenarios = SCENARIOS
    thread_name = "fake-vertex"

    def __init__(
        self,
        project_id: str = "fake-project",
        region: str = "us-central1",
        reply: str = "Hello from fake Vertex.",
        prompt_tokens: int = 11,
        completion_tokens: int = 7,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.project_id = project_id
        self.region = region
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.function_args: dict[str, Any] = {"location": "Paris", "unit": "celsius"}
        self.token_lifetime = 3599  # Google's `expires_in`
        self.token_delay = 0.0  # seconds the token endpoint takes (concurrency tests)
        self.embedding_dimensions = 8
        self.client_email = f"relay@{project_id}.iam.gserviceaccount.com"
        self.private_key_id = rand_id(40).lower()
        self._key = service_account_key(0)
        self._tokens: dict[str, float] = {}  # access token -> wall-clock expiry
        self._assertions: list[dict[str, Any]] = []  # decoded claims of every good JWT

    # ------------------------------------------------------------------ public API

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def service_account(
        self, *, private_key: rsa.RSAPrivateKey | None = None, **fields: Any
    ) -> dict[str, Any]:
        """The key file Google hands out for this fake's service account."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": private_key_pem(private_key or self._key),
            "client_email": self.client_email,
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
            **fields,
        }

    @property
    def token_requests(self) -> int:
        return sum(1 for r in self.requests if r.path == "/token")

    @property
    def model_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path != "/token"]

    @property
    def assertions(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._assertions)

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def revoke_tokens(self) -> None:
        """Every token issued so far stops working (as when a key is disabled)."""
        with self._lock:
            self._tokens.clear()

    # ------------------------------------------------------------------ routing

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if recorded.path == "/token":
            return await self._token(recorded)
        target = self._target(recorded.path)
        if recorded.method != "POST" or target is None:
            return json_response(google_error(404, "NOT_FOUND", f"Not found: {recorded.path}"), 404)
        denied = self._check_token(recorded)
        if denied is not None:
            return denied
        project, region, publisher, model, method = target
        if project != self.project_id:
            return json_response(
                google_error(
                    403,
                    "PERMISSION_DENIED",
                    f"Permission denied on resource project {project}.",
                ),
                403,
            )
        known = {"google": GEMINI_MODELS | EMBEDDING_MODELS, "anthropic": CLAUDE_MODELS}
        if region != self.region or model not in known.get(publisher, ()):
            return json_response(
                google_error(
                    404,
                    "NOT_FOUND",
                    f"Publisher Model `projects/{project}/locations/{region}/publishers/"
                    f"{publisher}/models/{model}` not found.",
                ),
                404,
            )
        if not isinstance(recorded.json, dict):
            return json_response(
                google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."), 400
            )
        if publisher == "anthropic":
            return await self._claude(request, recorded, method, scenario)
        return await self._google(request, recorded, model, method, scenario)

    @staticmethod
    def _target(path: str) -> tuple[str, str, str, str, str] | None:
        """(project, region, publisher, model, method) of a Vertex model path."""
        segments = path.split("/")
        # ['', 'v1', 'projects', p, 'locations', r, 'publishers', pub, 'models', 'm:method']
        if len(segments) != 10 or segments[1] != "v1":
            return None
        if [segments[2], segments[4], segments[6], segments[8]] != [
            "projects",
            "locations",
            "publishers",
            "models",
        ]:
            return None
        model, _, method = segments[9].partition(":")
        if not model or not method:
            return None
        return segments[3], segments[5], segments[7], model, method

    def _check_token(self, recorded: RecordedRequest) -> web.Response | None:
        header = recorded.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None or expiry <= time.time():
            return json_response(google_error(401, "UNAUTHENTICATED", UNAUTHENTICATED), 401)
        return None

    # ------------------------------------------------------------------ OAuth

    async def _token(self, recorded: RecordedRequest) -> web.Response:
        if self.token_delay:
            await asyncio.sleep(self.token_delay)
        try:
            claims = self._verify_grant(recorded)
        except OAuthError as error:
            return json_response(
                {"error": error.error, "error_description": error.description}, error.status
            )
        token = "ya29.fake-" + rand_id(40)
        with self._lock:
            self._assertions.append(claims)
            self._tokens[token] = time.time() + self.token_lifetime
        return json_response(
            {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        )

    def _verify_grant(self, recorded: RecordedRequest) -> dict[str, Any]:
        if not recorded.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            raise OAuthError("invalid_request", "Bad Request")
        form = recorded.form
        if form.get("grant_type") != GRANT_TYPE:
            raise OAuthError("unsupported_grant_type", "Invalid grant_type: ")
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            raise OAuthError("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            claims = json.loads(_b64url_decode(parts[1]))
            signature = _b64url_decode(parts[2])
        except ValueError:
            raise OAuthError("invalid_grant", "Invalid JWT: malformed") from None
        if header.get("alg") != "RS256":
            raise OAuthError("invalid_grant", "Invalid JWT: unsupported algorithm")
        try:
            self.public_key.verify(
                signature, f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise OAuthError("invalid_grant", "Invalid JWT Signature.") from None
        if claims.get("iss") != self.client_email:
            raise OAuthError("invalid_grant", "Invalid grant: account not found")
        if claims.get("aud") != self.token_uri:
            raise OAuthError("invalid_grant", "Invalid JWT: Failed audience check.")
        if SCOPE not in str(claims.get("scope") or "").split():
            raise OAuthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise OAuthError("invalid_grant", "Invalid JWT: iat and exp are required")
        if iat > now + 60 or exp <= now or exp - iat > 3600:
            raise OAuthError(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                "reasonable timeframe. Check your iat and exp values in the JWT claim.",
            )
        return {"header": header, **claims}

    # ------------------------------------------------------------------ Gemini

    def _scenario_error(self, scenario: str) -> web.Response:
        if scenario == "error_429":
            return json_response(
                google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Quota exceeded for aiplatform.googleapis.com/generate_content_requests_"
                    "per_minute_per_project_per_base_model with base model: gemini-1.5-flash.",
                ),
                429,
            )
        return json_response(google_error(500, "INTERNAL", "Internal error encountered."), 500)

    async def _google(
        self,
        request: web.Request,
        recorded: RecordedRequest,
        model: str,
        method: str,
        scenario: str,
    ) -> web.StreamResponse:
        payload = recorded.json
        assert isinstance(payload, dict)
        if method == "predict":
            if model not in EMBEDDING_MODELS:
                return json_response(
                    google_error(400, "FAILED_PRECONDITION", f"{model} does not support predict"),
                    400,
                )
            return self._embeddings(payload)
        if method not in ("generateContent", "streamGenerateContent") or model not in (
            GEMINI_MODELS
        ):
            return json_response(
                google_error(400, "INVALID_ARGUMENT", f"{method} is not supported for {model}"),
                400,
            )
        try:
            validate_generate(payload, "v1beta")  # Vertex's v1 knows every v1beta field
        except InvalidArgument as error:
            return json_response(google_error(400, "INVALID_ARGUMENT", str(error)), 400)
        if scenario in ERROR_SCENARIOS:
            return self._scenario_error(scenario)
        if method == "generateContent":
            return json_response(self._gemini_response(payload, model, scenario))
        events = self._gemini_events(payload, model, scenario)
        if recorded.query.get("alt") != "sse":
            return json_response(events)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i, event in enumerate(events):
            if scenario == "error_mid_stream" and i == 2:
                error = google_error(500, "INTERNAL", "Internal error encountered.")
                await response.write(f"data: {json.dumps(error)}\r\n\r\n".encode())
                break
            await response.write(f"data: {json.dumps(event)}\r\n\r\n".encode())
        await response.write_eof()
        return response

    def _function_name(self, payload: dict[str, Any]) -> str | None:
        declarations = [
            d for tool in payload.get("tools") or () for d in tool.get("functionDeclarations") or ()
        ]
        last = payload["contents"][-1]
        if not declarations or any("functionResponse" in part for part in last["parts"]):
            return None
        return str(declarations[0]["name"])

    def _usage(self, completion: int) -> dict[str, Any]:
        return {
            "promptTokenCount": self.prompt_tokens,
            "candidatesTokenCount": completion,
            "totalTokenCount": self.prompt_tokens + completion,
        }

    def _gemini_response(self, payload: dict[str, Any], model: str, scenario: str) -> dict:
        function = self._function_name(payload)
        if function is not None:
            parts: list[dict[str, Any]] = [
                {"functionCall": {"name": function, "args": self.function_args}}
            ]
            reason = "STOP"
        else:
            text, reason = self.reply, "STOP"
            if scenario == "max_tokens":
                text, reason = text[: len(text) // 2], "MAX_TOKENS"
            parts = [{"text": text}]
        count = (payload.get("generationConfig") or {}).get("candidateCount") or 1
        candidates = [
            {"content": {"role": "model", "parts": parts}, "finishReason": reason, "index": i}
            for i in range(count)
        ]
        return {
            "candidates": candidates,
            "usageMetadata": self._usage(self.completion_tokens * count),
            "modelVersion": model,
            "createTime": "2025-01-01T00:00:00.000000Z",
            "responseId": rand_id(),
        }

    def _gemini_events(self, payload: dict[str, Any], model: str, scenario: str) -> list[dict]:
        whole = self._gemini_response(payload, model, scenario)
        candidate = whole["candidates"][0]
        part = candidate["content"]["parts"][0]
        if len(whole["candidates"]) > 1 or "text" not in part:
            return [whole]
        pieces = split_text(part["text"])
        events = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            event_candidate: dict[str, Any] = {
                "content": {"role": "model", "parts": [{"text": piece}]},
                "index": 0,
            }
            if last:
                event_candidate["finishReason"] = candidate["finishReason"]
            events.append(
                {
                    "candidates": [event_candidate],
                    "usageMetadata": self._usage(self.completion_tokens if last else i + 1),
                    "modelVersion": model,
                    "responseId": whole["responseId"],
                }
            )
        return events

    def _embeddings(self, payload: dict[str, Any]) -> web.Response:
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            return json_response(
                google_error(400, "INVALID_ARGUMENT", "instances must not be empty"), 400
            )
        size = (payload.get("parameters") or {}).get(
            "outputDimensionality", self.embedding_dimensions
        )
        predictions = []
        for instance in instances:
            text = instance.get("content") if isinstance(instance, dict) else None
            if not isinstance(text, str) or not text:
                return json_response(
                    google_error(400, "INVALID_ARGUMENT", "content must be a non-empty string"),
                    400,
                )
            statistics = {"truncated": False, "token_count": len(text.split())}
            predictions.append(
                {"embeddings": {"values": gemini_vector(text, size), "statistics": statistics}}
            )
        billable = sum(len(i["content"]) for i in instances)
        return json_response(
            {"predictions": predictions, "metadata": {"billableCharacterCount": billable}}
        )

    # ------------------------------------------------------------------ Claude

    def _anthropic_error(self, status: int, type_: str, message: str) -> web.Response:
        return json_response(
            {"type": "error", "error": {"type": type_, "message": message}}, status
        )

    async def _claude(
        self, request: web.Request, recorded: RecordedRequest, method: str, scenario: str
    ) -> web.StreamResponse:
        payload = recorded.json
        assert isinstance(payload, dict)
        if method not in ("rawPredict", "streamRawPredict"):
            return json_response(
                google_error(400, "INVALID_ARGUMENT", f"{method} is not supported for Claude"),
                400,
            )
        if payload.get("anthropic_version") != ANTHROPIC_VERSION:
            return self._anthropic_error(
                400, "invalid_request_error", "anthropic_version: vertex-2023-10-16 is required"
            )
        if "model" in payload:
            return self._anthropic_error(
                400, "invalid_request_error", "model: Extra inputs are not permitted"
            )
        body = {k: v for k, v in payload.items() if k != "anthropic_version"}
        try:
            validate_messages({**body, "model": "vertex"})
        except InvalidRequest as error:
            return self._anthropic_error(400, "invalid_request_error", str(error))
        streaming = method == "streamRawPredict"
        if streaming != (payload.get("stream") is True):
            return self._anthropic_error(
                400, "invalid_request_error", "stream must be true exactly for streamRawPredict"
            )
        if scenario == "error_429":
            return self._anthropic_error(429, "rate_limit_error", "Too many requests")
        if scenario == "error_500":
            return self._anthropic_error(500, "api_error", "Internal server error")
        message = self._claude_message(payload, scenario)
        if not streaming:
            return json_response(message)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for name, data in self._claude_events(message):
            await response.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        await response.write_eof()
        return response

    def _claude_message(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        last = payload["messages"][-1]["content"]
        answered = isinstance(last, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in last
        )
        tools = payload.get("tools")
        if tools and not answered:
            block = {
                "type": "tool_use",
                "id": "toolu_vrtx_" + rand_id(),
                "name": tools[0]["name"],
                "input": self.function_args,
            }
            content, stop = [block], "tool_use"
        else:
            text, stop = self.reply, "end_turn"
            if scenario == "max_tokens":
                text, stop = text[: len(text) // 2], "max_tokens"
            content = [{"type": "text", "text": text}]
        return {
            "id": "msg_vrtx_" + rand_id(),
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-sonnet-v2-20241022",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens},
        }

    def _claude_events(self, message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": self.prompt_tokens, "output_tokens": 1}
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": start})
        ]
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                head = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in split_text(block["text"])]
            else:
                head = {**block, "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": head},
                )
            )
            events += [
                ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                for d in deltas
            ]
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                    "usage": {"output_tokens": self.completion_tokens},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events
