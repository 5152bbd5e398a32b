"""Rerank (`POST /v1/rerank`, Cohere's and Jina's format), relayed to the channels offering it.

Request: `{model, query, documents: [str | {text}], top_n?, return_documents?}`, passed on as
sent (the model mapped; SiliconFlow gets plain-string documents). Served by Cohere (its
`/v1/rerank`), SiliconFlow, and Custom / OpenAI-Compatible channels pointing at a server with a
rerank path (Jina: base URL `https://api.jina.ai`); any other channel type fails over to the
next channel, and when none is left the client gets a 400 naming the type.

Answer, whatever the provider: `{"id", "results": [{index, relevance_score, document?}],
"usage": {"prompt_tokens", "total_tokens"}}` (plus `search_units` when billed in them), and
the provider's `meta` when it sent one.

Billing (One API has no rerank; this is our choice):
- per token: `quota = ceil(tokens × model_ratio × group_ratio)`, the tokens being the
  provider's count (`usage.prompt_tokens` / `usage.total_tokens` as Jina,
  `meta.billed_units.input_tokens` or `meta.tokens.input_tokens` as SiliconFlow), else query
  and documents counted with tiktoken;
- per search unit, when the provider billed in them (Cohere's `meta.billed_units
  .search_units`): `quota = ceil(search_units × 1000 × model_ratio × group_ratio)`. A search
  unit is priced as 1000 tokens, so model ratio 1 ($0.002 per 1K tokens) is exactly Cohere's
  $2 per 1000 searches. The log then shows 0 tokens and the units in its content.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson

from billing import pricing
from channels_mgmt.selection import ChannelInfo
from oneapi.options import OptionSnapshot
from relay import usage
from relay.adaptors.base import Adaptor, Attempt, OpenAIBody
from relay.adaptors.cohere import CohereAdaptor
from relay.adaptors.openai import OpenAIAdaptor
from relay.caller import authenticate
from relay.catalog import ChannelType
from relay.dispatch import Charge, channel_adaptor, price, read_body, reserve, run_attempts
from relay.errors import RelayError
from relay.failures import UpstreamFailure
from relay.http import Request, Response, StreamResponse
from relay.inbound.responses import build_or_skip, cannot_serve, client_model
from relay.modes import RelayMode
from relay.text import parse_json_object, parse_result

MODE = RelayMode.RERANK
QUOTA_PER_SEARCH_UNIT = 1000
# Cohere counts one search unit per query over up to 100 documents.
DOCUMENTS_PER_SEARCH_UNIT = 100
# Providers whose `documents` must be strings.
STRING_DOCUMENT_TYPES = frozenset({ChannelType.SILICONFLOW})


def invalid(message: str, param: str) -> RelayError:
    return RelayError(400, message, code="invalid_rerank_request", param=param)


# ---------------------------------------------------------------------- the request


def document_text(document: Any) -> str:
    if isinstance(document, str):
        return document
    text = document.get("text") if isinstance(document, dict) else None
    return text if isinstance(text, str) else orjson.dumps(document).decode()


def checked_request(payload: dict[str, Any]) -> tuple[str, list[Any]]:
    """(query, documents) of a valid request; a 400 for anything a provider would refuse."""
    query = payload.get("query")
    if not isinstance(query, str) or not query:
        raise invalid("query must be a non-empty string", "query")
    documents = payload.get("documents")
    if not isinstance(documents, list) or not documents:
        raise invalid("documents must be a non-empty list", "documents")
    if not all(isinstance(document, str | dict) for document in documents):
        raise invalid("each document must be a string or an object with text", "documents")
    top_n = payload.get("top_n")
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise invalid("top_n must be a positive integer", "top_n")
    return query, documents


def count_tokens(query: str, documents: list[Any], model: str, options: OptionSnapshot) -> int:
    texts = [query, *(document_text(document) for document in documents)]
    return sum(usage.count_text(text, model, options) for text in texts)


def reservation(
    adaptor: Adaptor, tokens: int, documents: int, ratio: float, options: OptionSnapshot
) -> int:
    amount = pricing.pre_consume_quota(tokens, 0, ratio, options)
    if isinstance(adaptor, CohereAdaptor):  # billed per search unit
        units = math.ceil(documents / DOCUMENTS_PER_SEARCH_UNIT)
        amount = max(amount, math.ceil(units * QUOTA_PER_SEARCH_UNIT * ratio))
    return amount


def serving_adaptor(attempt: Attempt) -> Adaptor:
    adaptor = channel_adaptor(attempt.channel)
    if not isinstance(adaptor, OpenAIAdaptor | CohereAdaptor):
        raise cannot_serve(attempt)
    return adaptor


# ---------------------------------------------------------------------- the answer


def _count(value: Any) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return int(value)
    return None


def search_units(result: dict[str, Any]) -> int:
    meta = result.get("meta")
    billed = meta.get("billed_units") if isinstance(meta, dict) else None
    return (_count(billed.get("search_units")) if isinstance(billed, dict) else None) or 0


def _token_fields(result: dict[str, Any]) -> list[Any]:
    """Where providers put the count, in order: `usage` (Jina, OpenAI-style), then `meta`
    (what was billed before the raw count: SiliconFlow reports both)."""
    found = result.get("usage")
    fields: list[Any] = []
    if isinstance(found, dict):
        fields += [found.get(name) for name in ("prompt_tokens", "total_tokens", "input_tokens")]
    meta = result.get("meta")
    for section in ("billed_units", "tokens"):
        units = meta.get(section) if isinstance(meta, dict) else None
        if isinstance(units, dict):
            fields.append(units.get("input_tokens"))
    return fields


def reported_tokens(result: dict[str, Any]) -> int | None:
    """The first positive count reported, else a reported 0, else None (none reported)."""
    counts = [count for count in map(_count, _token_fields(result)) if count is not None]
    return next((count for count in counts if count > 0), counts[0] if counts else None)


@dataclass(frozen=True)
class RerankBill:
    quota: int
    tokens: int
    search_units: int = 0

    @property
    def usage(self) -> dict[str, int]:
        counts = {"prompt_tokens": self.tokens, "total_tokens": self.tokens}
        if self.search_units:
            counts["search_units"] = self.search_units
        return counts


def bill_of(result: dict[str, Any], counted: int, ratio: float) -> RerankBill:
    units = search_units(result)
    if units:
        return RerankBill(math.ceil(units * QUOTA_PER_SEARCH_UNIT * ratio), 0, units)
    tokens = reported_tokens(result)
    if tokens is None:
        tokens = counted
    return RerankBill(pricing.text_quota(tokens, 0, ratio, 1.0), tokens)


def rerank_results(result: dict[str, Any]) -> list[Any]:
    results = result.get("results")
    if not isinstance(results, list):
        raise UpstreamFailure(
            RelayError(500, "upstream rerank answer has no results", code="bad_response_body"),
            retryable=True,
        )
    return results


def normalized(result: dict[str, Any], results: list[Any], bill: RerankBill) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": str(result.get("id") or f"rerank-{secrets.token_hex(12)}"),
        "results": results,
        "usage": bill.usage,
    }
    if isinstance(result.get("meta"), dict):
        answer["meta"] = result["meta"]
    return answer


def log_content(text: str, bill: RerankBill) -> str:
    if not bill.search_units:
        return text
    return f"{text}，{bill.search_units} search units × {QUOTA_PER_SEARCH_UNIT}"


# ---------------------------------------------------------------------- the handler


def upstream_body(
    request: Request, payload: dict[str, Any], attempt: Attempt, model: str
) -> OpenAIBody:
    body = OpenAIBody(request.body, dict(payload))
    if attempt.model != model:
        body.set("model", attempt.model)
    documents = payload["documents"]
    if attempt.channel.type in STRING_DOCUMENT_TYPES and not all(
        isinstance(document, str) for document in documents
    ):
        body.set("documents", [document_text(document) for document in documents])
    return body


async def relay_rerank(request: Request) -> Response | StreamResponse:
    started = time.monotonic()
    caller = await authenticate(request)
    payload = parse_json_object(request.body)
    model = client_model(payload, caller)
    query, documents = checked_request(payload)
    counted = count_tokens(query, documents, model, caller.options)

    async def attempt(channel: ChannelInfo) -> Response:
        actual_model = channel.model_mapping.get(model) or model
        this_try = Attempt(channel, MODE, actual_model, False, request)
        adaptor = serving_adaptor(this_try)
        await adaptor.prepare(this_try)
        upstream_call = build_or_skip(
            adaptor, this_try, upstream_body(request, payload, this_try, model)
        )
        prices = price(caller, actual_model, channel.type)
        amount = reservation(adaptor, counted, len(documents), prices.ratio, caller.options)
        charge = Charge(
            caller=caller,
            channel=channel,
            model=actual_model,
            reservation=await reserve(caller, amount),
            request_id=request.request_id,
            started=started,
        )
        try:
            upstream = await adaptor.send(this_try, upstream_call)
            raw = await read_body(upstream)
            result = parse_result(adaptor.translate_response(this_try, raw), upstream.status_code)
            results = rerank_results(result)
        except BaseException:
            charge.release()
            raise
        bill = bill_of(result, counted, prices.ratio)
        charge.settle(bill.quota, bill.tokens, 0, log_content(prices.text, bill))
        return Response(200, orjson.dumps(normalized(result, results, bill)))

    return await run_attempts(caller, model, attempt, counted)
