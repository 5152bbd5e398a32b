"""The Vertex AI adaptor: service-account JWTs, the token cache, URLs and bodies in
isolation, then the relay against a fake Vertex (and its fake Google token endpoint)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt as pyjwt
import orjson
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from billing import pricing
from billing.models import Log
from channels_mgmt.models import Channel
from channels_mgmt.selection import ChannelInfo
from channels_mgmt.services import update_channel
from relay.adaptors import adaptor_for, anthropic, gemini, vertex
from relay.adaptors.base import Attempt, OpenAIBody
from relay.adaptors.vertex import (
    ANTHROPIC_VERSION,
    SCOPE,
    ServiceAccount,
    TokenCache,
    VertexAIAdaptor,
    parse_service_account,
    service_account_jwt,
    sign_rs256,
)
from relay.catalog import ChannelType
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request
from relay.modes import RelayMode
from relay.upstream import close_client
from tests.factories import make_channel
from tests.fakes.gemini_upstream import gemini_vector
from tests.fakes.vertex_upstream import FakeVertex, private_key_pem, service_account_key
from tests.relay.conftest import World

GEMINI = "gemini-1.5-flash-002"
CLAUDE = "claude-3-5-sonnet-v2@20241022"
PROJECT = "fake-project"
REGION = "us-east5"
KEY = service_account_key(0)
ACCOUNT = {
    "type": "service_account",
    "project_id": "json-project",
    "private_key_id": "abc123",
    "private_key": private_key_pem(KEY),
    "client_email": "relay@json-project.iam.gserviceaccount.com",
    "token_uri": "https://oauth2.googleapis.com/token",
}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


@pytest.fixture(autouse=True)
def fresh_tokens() -> Iterator[None]:
    """Channel ids repeat between tests: no test may see another's cached token."""
    vertex.TOKENS.entries.clear()
    yield
    vertex.TOKENS.entries.clear()


def make_attempt(
    *,
    model: str = GEMINI,
    mode: RelayMode = RelayMode.CHAT,
    stream: bool = False,
    key: str | None = None,
    base_url: str = "",
    config: dict[str, object] | None = None,
    client_body: dict[str, Any] | None = None,
) -> Attempt:
    channel = ChannelInfo(
        id=7,
        type=ChannelType.VERTEX_AI,
        name="vertex",
        key=json.dumps(ACCOUNT) if key is None else key,
        base_url=base_url,
        status=1,
        priority=0,
        weight=1,
        models=(model,),
        model_mapping={},
        config={"region": REGION} if config is None else config,
        system_prompt="",
        other="",
    )
    request = Request(
        method="POST",
        path=mode.upstream_path,
        query_string=b"",
        headers={},
        body=orjson.dumps(client_body or {}),
        client_ip="127.0.0.1",
        request_id="test-request",
    )
    return Attempt(channel, mode, model, stream, request)


def build(payload: dict[str, Any], **attempt: Any) -> Any:
    body = OpenAIBody(orjson.dumps(payload), dict(payload))
    return VertexAIAdaptor().build_request(make_attempt(**attempt), body)


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def chat(model: str = GEMINI, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "Hi"}], **fields}


# ---------------------------------------------------------------------- the JWT


def account() -> ServiceAccount:
    return parse_service_account(json.dumps(ACCOUNT))


def test_the_assertion_is_an_rs256_jwt_with_googles_claims() -> None:
    token = service_account_jwt(account(), now=1_700_000_000)

    header_part, claims_part, signature_part = token.split(".")
    assert json.loads(b64url_decode(header_part)) == {"alg": "RS256", "typ": "JWT", "kid": "abc123"}
    assert json.loads(b64url_decode(claims_part)) == {
        "iss": ACCOUNT["client_email"],
        "scope": SCOPE,
        "aud": "https://oauth2.googleapis.com/token",
        "iat": 1_700_000_000,
        "exp": 1_700_003_600,
    }
    # The signature verifies with the service account's public key...
    KEY.public_key().verify(
        b64url_decode(signature_part),
        f"{header_part}.{claims_part}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    # ...and an independent JWT library accepts the token as Google would.
    decoded = pyjwt.decode(
        token,
        KEY.public_key(),
        algorithms=["RS256"],
        audience="https://oauth2.googleapis.com/token",
        options={"verify_exp": False},
    )
    assert decoded["iss"] == ACCOUNT["client_email"]


def test_a_tampered_assertion_does_not_verify() -> None:
    token = service_account_jwt(account(), now=int(time.time()))
    header, claims, signature = token.split(".")
    forged = json.loads(b64url_decode(claims)) | {"iss": "someone@else.iam.gserviceaccount.com"}
    forged_part = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(
            f"{header}.{forged_part}.{signature}",
            KEY.public_key(),
            algorithms=["RS256"],
            audience="https://oauth2.googleapis.com/token",
        )


# RFC 7515 Appendix A.2 (JWS using RSASSA-PKCS1-v1_5 SHA-256): key, input and signature.
RFC_N = (
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4"
    "QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexM"
    "dbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFv"
    "UK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"
)
RFC_D = (
    "Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOo"
    "AJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gf"
    "pRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPD"
    "VZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ"
)
RFC_P = (
    "4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJd"
    "TJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc"
)
RFC_Q = (
    "uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD"
    "_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc"
)
RFC_SIGNING_INPUT = (
    "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLm"
    "NvbS9pc19yb290Ijp0cnVlfQ"
)
RFC_SIGNATURE = (
    "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujG"
    "bds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7"
    "K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np"
    "6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
)


def test_rs256_matches_the_published_rfc_7515_example() -> None:
    def number(value: str) -> int:
        return int.from_bytes(b64url_decode(value), "big")

    n, d, p, q = number(RFC_N), number(RFC_D), number(RFC_P), number(RFC_Q)
    key = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(65537, n),
    ).private_key()

    signature = sign_rs256(key, RFC_SIGNING_INPUT.encode())

    assert vertex.b64url(signature) == RFC_SIGNATURE


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not a JSON object"),
        ("[1]", "not a JSON object"),
        (json.dumps({"client_email": "a@b"}), "lacks private_key"),
        (json.dumps({"private_key": "x"}), "lacks client_email"),
    ],
)
def test_broken_credentials_are_a_channel_failure(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_service_account(raw)
    with pytest.raises(UpstreamFailure) as caught:
        build(chat(), key=raw)
    assert message in caught.value.error.message
    assert caught.value.retryable and not caught.value.from_upstream


def test_a_key_that_is_not_pem_is_a_channel_failure() -> None:
    broken = json.dumps({**ACCOUNT, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n"})
    with pytest.raises(UpstreamFailure) as caught:
        build(chat(), key=broken)
    assert caught.value.error.code == "invalid_channel_config"


def test_the_config_adc_takes_precedence_over_the_key() -> None:
    call = build(
        chat(), key="unused", config={"region": REGION, "vertex_ai_adc": json.dumps(ACCOUNT)}
    )
    assert "/projects/json-project/" in call.url


# ---------------------------------------------------------------------- URLs and bodies


@pytest.mark.parametrize(
    ("model", "stream", "tail"),
    [
        (GEMINI, False, f"publishers/google/models/{GEMINI}:generateContent"),
        (GEMINI, True, f"publishers/google/models/{GEMINI}:streamGenerateContent?alt=sse"),
        (CLAUDE, False, f"publishers/anthropic/models/{CLAUDE}:rawPredict"),
        (CLAUDE, True, f"publishers/anthropic/models/{CLAUDE}:streamRawPredict"),
    ],
)
def test_urls_by_model_family(model: str, stream: bool, tail: str) -> None:
    call = build(chat(model, stream=stream), model=model, stream=stream)
    assert call.url == (
        f"https://{REGION}-aiplatform.googleapis.com/v1/projects/json-project/"
        f"locations/{REGION}/{tail}"
    )
    assert call.method == "POST"
    assert "authorization" not in call.headers  # added by `send`, with the current token


def test_project_from_config_region_default_global_and_base_url_override() -> None:
    configured = build(chat(), config={"region": "europe-west4", "vertex_ai_project_id": "p2"})
    assert configured.url.startswith(
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/p2/locations/europe-west4/"
    )
    assert build(chat(), config={}).url.startswith(
        "https://us-central1-aiplatform.googleapis.com/v1/projects/json-project/locations/"
        "us-central1/"
    )
    assert build(chat(), config={"region": "global"}).url.startswith(
        "https://aiplatform.googleapis.com/v1/projects/json-project/locations/global/"
    )
    assert build(chat(), base_url="http://127.0.0.1:9/v1/").url.startswith(
        f"http://127.0.0.1:9/v1/projects/json-project/locations/{REGION}/"
    )


def test_a_channel_without_any_project_fails_over() -> None:
    no_project = json.dumps({k: v for k, v in ACCOUNT.items() if k != "project_id"})
    with pytest.raises(UpstreamFailure, match="project id"):
        build(chat(), key=no_project)


def test_gemini_bodies_are_the_gemini_adaptors() -> None:
    payload = chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
        ],
        tools=[WEATHER_TOOL],
        temperature=0.3,
        max_tokens=50,
    )
    call = build(payload)
    assert orjson.loads(call.content) == gemini.convert_request(payload)
    assert call.headers["content-type"] == "application/json"


def test_claude_bodies_are_anthropics_without_model_and_with_the_vertex_version() -> None:
    payload = chat(
        CLAUDE,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
        ],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    body = orjson.loads(build(payload, model=CLAUDE, stream=True).content)

    expected = anthropic.convert_request(payload, CLAUDE)
    del expected["model"]
    assert body == {**expected, "anthropic_version": ANTHROPIC_VERSION}
    assert body["stream"] is True
    assert body["system"] == "Be brief."
    hot = orjson.loads(build(chat(CLAUDE, temperature=1.6), model=CLAUDE).content)
    assert hot["temperature"] == 1.0  # OpenAI's range goes to 2, Claude's to 1


def test_embeddings_become_predict_instances() -> None:
    call = build(
        {"model": "text-embedding-005", "input": ["a", "b"], "dimensions": 4},
        model="text-embedding-005",
        mode=RelayMode.EMBEDDINGS,
    )
    assert call.url.endswith("/publishers/google/models/text-embedding-005:predict")
    assert orjson.loads(call.content) == {
        "instances": [{"content": "a"}, {"content": "b"}],
        "parameters": {"outputDimensionality": 4},
    }
    with pytest.raises(RelayError) as caught:
        build({"input": [[1, 2]]}, model="text-embedding-005", mode=RelayMode.EMBEDDINGS)
    assert caught.value.status == 400


def test_embedding_predictions_become_an_openai_list_with_token_usage() -> None:
    data = {
        "predictions": [
            {"embeddings": {"values": [0.5, -0.25], "statistics": {"token_count": 3}}},
            {"embeddings": {"values": [0.125, 1.0], "statistics": {"token_count": 2.0}}},
        ]
    }
    attempt = make_attempt(model="text-embedding-005", mode=RelayMode.EMBEDDINGS)
    result = orjson.loads(VertexAIAdaptor().translate_response(attempt, orjson.dumps(data)))
    assert result["data"][1] == {"object": "embedding", "index": 1, "embedding": [0.125, 1.0]}
    assert result["usage"] == {"prompt_tokens": 5, "total_tokens": 5}


@pytest.mark.parametrize(
    ("model", "mode"),
    [
        (GEMINI, RelayMode.COMPLETIONS),
        (GEMINI, RelayMode.IMAGES_GENERATIONS),
        (CLAUDE, RelayMode.EMBEDDINGS),
    ],
)
def test_what_vertex_cannot_do_is_a_400(model: str, mode: RelayMode) -> None:
    with pytest.raises(RelayError) as caught:
        build({"model": model, "prompt": "x", "input": "x"}, model=model, mode=mode)
    assert (caught.value.status, caught.value.code) == (400, "unsupported_mode")


def test_responses_are_converted_by_family() -> None:
    adaptor = VertexAIAdaptor()
    google = {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "index": 0,
                        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 4, "candidatesTokenCount": 1, "totalTokenCount": 5},
    }  # fmt: skip
    claude = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 4, "output_tokens": 1},
    }
    from_gemini = orjson.loads(adaptor.translate_response(make_attempt(), orjson.dumps(google)))
    from_claude = orjson.loads(
        adaptor.translate_response(make_attempt(model=CLAUDE), orjson.dumps(claude))
    )
    for result in (from_gemini, from_claude):
        assert result["choices"][0]["message"]["content"] == "Hi"
        assert result["usage"]["total_tokens"] == 5
    assert isinstance(adaptor.stream_translator(make_attempt(), False), gemini.GeminiStream)
    assert isinstance(
        adaptor.stream_translator(make_attempt(model=CLAUDE), False), anthropic.AnthropicStream
    )


def test_vertex_channels_have_this_adaptor() -> None:
    assert isinstance(adaptor_for(ChannelType.VERTEX_AI), VertexAIAdaptor)


# ---------------------------------------------------------------------- the token cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Exchanges:
    """A token endpoint stand-in: counts calls, can be slow or fail."""

    def __init__(self, lifetime: int = 3599, delay: float = 0.0) -> None:
        self.calls = 0
        self.lifetime = lifetime
        self.delay = delay
        self.fail_next = False

    async def __call__(self) -> tuple[str, int]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_next:
            self.fail_next = False
            raise UpstreamFailure(RelayError(401, "refused"), retryable=True)
        return f"token-{self.calls}", self.lifetime


def test_a_token_is_cached_for_fifty_minutes_then_refreshed() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock)
    fetch = Exchanges()

    async def get() -> str:
        return await cache.get("channel", fetch)

    assert asyncio.run(get()) == "token-1"
    clock.now += 49 * 60
    assert asyncio.run(get()) == "token-1"
    assert fetch.calls == 1
    clock.now += 60  # 50 minutes in: ten minutes before Google's expiry
    assert asyncio.run(get()) == "token-2"
    assert fetch.calls == 2


def test_a_short_lived_token_is_refreshed_halfway() -> None:
    clock = Clock()
    cache = TokenCache(clock=clock)
    fetch = Exchanges(lifetime=120)

    assert asyncio.run(cache.get("c", fetch)) == "token-1"
    clock.now += 59
    assert asyncio.run(cache.get("c", fetch)) == "token-1"
    clock.now += 1
    assert asyncio.run(cache.get("c", fetch)) == "token-2"


def test_concurrent_requests_share_one_exchange() -> None:
    cache = TokenCache()
    fetch = Exchanges(delay=0.05)

    async def burst() -> list[str]:
        return await asyncio.gather(*(cache.get("c", fetch) for _ in range(20)))

    assert asyncio.run(burst()) == ["token-1"] * 20
    assert fetch.calls == 1


def test_channels_and_keys_have_their_own_tokens() -> None:
    cache = TokenCache()
    fetch = Exchanges()

    async def both() -> tuple[str, str]:
        return await cache.get((1, "key-a"), fetch), await cache.get((1, "key-b"), fetch)

    assert asyncio.run(both()) == ("token-1", "token-2")


def test_a_failed_exchange_is_not_cached_and_waiters_retry() -> None:
    cache = TokenCache()
    fetch = Exchanges(delay=0.02)
    fetch.fail_next = True

    async def two() -> list[Any]:
        return await asyncio.gather(
            cache.get("c", fetch), cache.get("c", fetch), return_exceptions=True
        )

    first, second = asyncio.run(two())
    assert isinstance(first, UpstreamFailure)
    assert second == "token-2"  # the waiter did its own exchange after the failure


def test_invalidate_forgets_only_the_refused_token() -> None:
    cache = TokenCache()
    fetch = Exchanges()
    asyncio.run(cache.get("c", fetch))
    cache.invalidate("c", "token-0")  # an older token: the current one stays
    assert cache.cached("c") == "token-1"
    cache.invalidate("c", "token-1")
    assert cache.cached("c") is None


# ---------------------------------------------------------------------- the fake token endpoint


@pytest.fixture
def fake() -> Iterator[FakeVertex]:
    with FakeVertex(project_id=PROJECT, region=REGION) as server:
        yield server


def fake_account(fake: FakeVertex, **fields: Any) -> ServiceAccount:
    return parse_service_account(json.dumps(fake.service_account(**fields)))


def exchange(account: ServiceAccount) -> tuple[str, int]:
    """One exchange on a fresh event loop, whose shared HTTP client is closed after."""

    async def run() -> tuple[str, int]:
        try:
            return await vertex.exchange_token(account)
        finally:
            await close_client()

    return asyncio.run(run())


def test_the_exchange_gets_a_token_from_googles_endpoint(fake: FakeVertex) -> None:
    token, lifetime = exchange(fake_account(fake))

    assert token in fake.issued_tokens
    assert lifetime == 3599
    sent = fake.last_request
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    (claims,) = fake.assertions
    assert claims["aud"] == fake.token_uri
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["header"]["kid"] == fake.private_key_id


def test_a_key_google_does_not_know_is_an_authentication_failure(fake: FakeVertex) -> None:
    other = service_account_key(1)
    with pytest.raises(UpstreamFailure) as caught:
        exchange(fake_account(fake, private_key=other))
    error = caught.value.error
    assert (error.status, error.type) == (401, "authentication_error")
    assert "invalid_grant: Invalid JWT Signature." in error.message


def test_the_fake_token_endpoint_is_strict(fake: FakeVertex) -> None:
    good = service_account_jwt(fake_account(fake), int(time.time()))
    stale = service_account_jwt(fake_account(fake), int(time.time()) - 7200)
    wrong_aud = service_account_jwt(
        fake_account(fake, token_uri="https://x/token"), int(time.time())
    )
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"}
    cases = [
        ({**form, "assertion": good}, 200, None),
        ({**form, "assertion": stale}, 400, "short-lived"),
        ({**form, "assertion": wrong_aud}, 400, "audience"),
        ({"grant_type": "client_credentials", "assertion": good}, 400, "grant_type"),
        ({**form, "assertion": "a.b"}, 400, "Invalid JWT"),
    ]
    for data, status, message in cases:
        response = httpx.post(fake.token_uri, data=data)
        assert response.status_code == status, (data, response.text)
        if message:
            assert message in response.json()["error_description"]


def test_the_fake_model_endpoints_are_strict(fake: FakeVertex) -> None:
    token, _ = exchange(fake_account(fake))
    auth = {"authorization": f"Bearer {token}"}
    root = f"{fake.base_url}/v1/projects/{PROJECT}/locations/{REGION}/publishers"
    claude_url = f"{root}/anthropic/models/{CLAUDE}:rawPredict"
    claude = {
        "anthropic_version": ANTHROPIC_VERSION,
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    gemini_url = f"{root}/google/models/{GEMINI}:generateContent"
    gemini_body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    cases = [
        (claude_url, claude, {}, 401, "UNAUTHENTICATED"),
        (claude_url, {**claude, "model": CLAUDE}, auth, 400, "Extra inputs"),
        (claude_url, {**claude, "anthropic_version": "2023-06-01"}, auth, 400, "vertex-2023"),
        (claude_url, {**claude, "stream": True}, auth, 400, "streamRawPredict"),
        (gemini_url, {"contents": []}, auth, 400, "contents is not specified"),
        (gemini_url.replace(REGION, "europe-west1"), gemini_body, auth, 404, "not found"),
        (claude_url, claude, auth, 200, None),
        (gemini_url, gemini_body, auth, 200, None),
    ]
    for url, body, headers, status, message in cases:
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == status, (url, body, response.text)
        if message:
            assert message in response.text


def test_concurrent_sends_exchange_once(fake: FakeVertex) -> None:
    fake.token_delay = 0.2
    key = json.dumps(fake.service_account())
    adaptor = VertexAIAdaptor(TokenCache())

    async def burst() -> list[int]:
        calls = []
        for _ in range(8):
            attempt = make_attempt(key=key, base_url=fake.base_url)
            calls.append(adaptor.build_request(attempt, OpenAIBody(b"", chat())))
        responses = await asyncio.gather(
            *(adaptor.send(make_attempt(key=key), call) for call in calls)
        )
        for response in responses:
            await response.aread()
            await response.aclose()
        await close_client()
        return [response.status_code for response in responses]

    assert asyncio.run(burst()) == [200] * 8
    assert fake.token_requests == 1
    assert len(fake.model_requests) == 8


# ---------------------------------------------------------------------- through the relay


@pytest.fixture
def channel(world: World, fake: FakeVertex) -> Channel:
    return make_channel(
        type=ChannelType.VERTEX_AI,
        base_url=fake.base_url,
        key=json.dumps(fake.service_account()),
        models=f"{GEMINI},{CLAUDE},text-embedding-005",
        config=json.dumps({"region": REGION}),
    )


def expected_quota(prompt: int, completion: int, model: str) -> int:
    ratio = pricing.model_ratio(model, ChannelType.VERTEX_AI)
    completion_ratio = pricing.completion_ratio(model, ChannelType.VERTEX_AI)
    return math.ceil((prompt + completion * completion_ratio) * ratio)


def test_gemini_chat_with_a_fresh_token_and_billing(
    world: World, channel: Channel, fake: FakeVertex
) -> None:
    result = world.client.post("/v1/chat/completions", chat(temperature=0.2))

    assert result.status == 200, result.body
    assert fake.token_requests == 1
    sent = fake.model_requests[-1]
    assert sent.path == (
        f"/v1/projects/{PROJECT}/locations/{REGION}/publishers/google/models/"
        f"{GEMINI}:generateContent"
    )
    assert sent.headers["authorization"] == f"Bearer {fake.issued_tokens[0]}"
    assert sent.json["generationConfig"] == {"temperature": 0.2}
    body = result.json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": fake.reply}
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}

    world.refresh()
    log = Log.objects.get()
    assert (log.prompt_tokens, log.completion_tokens, log.model_name) == (11, 7, GEMINI)
    assert log.quota == expected_quota(11, 7, GEMINI) == world.user.used_quota

    again = world.client.post("/v1/chat/completions", chat())
    assert again.status == 200
    assert fake.token_requests == 1  # the cached token served the second request


def test_gemini_stream(world: World, channel: Channel, fake: FakeVertex) -> None:
    payload = chat(stream=True, stream_options={"include_usage": True})
    result = world.client.post("/v1/chat/completions", payload)

    assert result.status == 200, result.body
    assert fake.model_requests[-1].query == {"alt": "sse"}
    events = result.events
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-2])
    assert text == fake.reply
    assert events[-2]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    world.refresh()
    assert (Log.objects.get().prompt_tokens, Log.objects.get().completion_tokens) == (11, 7)


def test_gemini_tool_call_on_vertex(world: World, channel: Channel, fake: FakeVertex) -> None:
    result = world.client.post("/v1/chat/completions", chat(tools=[WEATHER_TOOL]))

    assert result.status == 200, result.body
    choice = result.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert orjson.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == (
        fake.function_args
    )


def test_claude_chat_and_stream(world: World, channel: Channel, fake: FakeVertex) -> None:
    plain = world.client.post("/v1/chat/completions", chat(CLAUDE, max_tokens=100))

    assert plain.status == 200, plain.body
    sent = fake.model_requests[-1]
    assert sent.path.endswith(f"/publishers/anthropic/models/{CLAUDE}:rawPredict")
    assert sent.json["anthropic_version"] == ANTHROPIC_VERSION
    assert "model" not in sent.json
    assert plain.json()["choices"][0]["message"]["content"] == fake.reply
    assert plain.json()["usage"]["prompt_tokens"] == 11

    streamed = world.client.post("/v1/chat/completions", chat(CLAUDE, stream=True))

    assert streamed.status == 200, streamed.body
    assert fake.model_requests[-1].path.endswith(":streamRawPredict")
    events = streamed.events
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == fake.reply
    assert fake.token_requests == 1
    world.refresh()
    assert [(log.prompt_tokens, log.completion_tokens) for log in Log.objects.all()] == [
        (11, 7),
        (11, 7),
    ]


def test_claude_tool_round_trip(world: World, channel: Channel, fake: FakeVertex) -> None:
    first = world.client.post("/v1/chat/completions", chat(CLAUDE, tools=[WEATHER_TOOL]))
    assert first.status == 200, first.body
    message = first.json()["choices"][0]["message"]
    call = message["tool_calls"][0]

    second = world.client.post(
        "/v1/chat/completions",
        chat(
            CLAUDE,
            tools=[WEATHER_TOOL],
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": "18C"},
            ],
        ),
    )

    assert second.status == 200, second.body
    assert second.json()["choices"][0]["message"]["content"] == fake.reply


def test_embeddings_through_the_relay(world: World, channel: Channel, fake: FakeVertex) -> None:
    result = world.client.post(
        "/v1/embeddings", {"model": "text-embedding-005", "input": ["hello world", "bye"]}
    )

    assert result.status == 200, result.body
    body = result.json()
    assert body["data"][0]["embedding"] == gemini_vector("hello world", 8)
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    world.refresh()
    assert Log.objects.get().prompt_tokens == 3


def test_a_revoked_token_is_replaced_and_the_request_sent_again(
    world: World, channel: Channel, fake: FakeVertex
) -> None:
    assert world.client.post("/v1/chat/completions", chat()).status == 200
    fake.revoke_tokens()

    result = world.client.post("/v1/chat/completions", chat())

    assert result.status == 200, result.body
    assert fake.token_requests == 2
    statuses = [r.headers["authorization"] for r in fake.model_requests]
    assert len(statuses) == 3 and statuses[1] != statuses[2]  # refused, then the new token


def test_a_refused_key_is_a_401_and_nothing_is_billed(
    world: World, channel: Channel, fake: FakeVertex
) -> None:
    update_channel(
        channel.pk, {"key": json.dumps(fake.service_account(private_key=service_account_key(1)))}
    )

    result = world.client.post("/v1/chat/completions", chat())

    assert result.status == 401, result.body
    assert "Invalid JWT Signature" in result.json()["error"]["message"]
    assert fake.model_requests == []
    world.refresh()
    assert Log.objects.count() == 0
    assert world.user.used_quota == 0


def test_upstream_errors_keep_their_status(
    world: World, channel: Channel, fake: FakeVertex
) -> None:
    fake.scenario = "error_429"
    limited = world.client.post("/v1/chat/completions", chat())
    assert limited.status == 429
    assert "Quota exceeded" in limited.json()["error"]["message"]

    fake.scenario = "error_500"
    failed = world.client.post("/v1/chat/completions", chat(CLAUDE, stream=True))
    assert failed.status == 500
    assert failed.json()["error"]["message"].startswith("Internal server error")


def test_a_wrong_project_is_googles_403(world: World, channel: Channel, fake: FakeVertex) -> None:
    update_channel(
        channel.pk, {"config": json.dumps({"region": REGION, "vertex_ai_project_id": "not-mine"})}
    )

    result = world.client.post("/v1/chat/completions", chat())

    assert result.status == 403
    assert "Permission denied on resource project not-mine" in result.json()["error"]["message"]


def test_an_error_mid_stream_reaches_the_client(
    world: World, channel: Channel, fake: FakeVertex
) -> None:
    fake.scenario = "error_mid_stream"

    events = world.client.post("/v1/chat/completions", chat(stream=True)).events

    assert events[-1]["error"]["code"] == "INTERNAL"
    assert "[DONE]" not in events
