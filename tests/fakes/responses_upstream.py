"""A fake upstream for OpenAI's Responses API and for rerank, over real HTTP.

    with FakeResponses(api_key="sk-upstream") as fake:
        ...  # an OpenAI channel with fake.base_url, or an Azure one, or a rerank provider
        assert fake.last_request.json["model"] == "gpt-4o-mini"

Routes:
- `POST /v1/responses` (`Authorization: Bearer`), and Azure's `POST /openai/v1/responses`
  (`api-version` preview or latest) and `POST /openai/responses` (a dated preview from
  2025-03-01-preview on), both with an `api-key` header. JSON, or with `stream: true` the
  event stream: `event: <type>` and `data: <json>` per event, response.created,
  response.in_progress, response.output_item.added, response.content_part.added,
  response.output_text.delta (one per piece of the reply), response.output_text.done,
  response.content_part.done, response.output_item.done, response.completed (with usage).
  No `[DONE]`, as OpenAI.
- `POST /v1/rerank` (`Authorization: Bearer`) in the style of `rerank_style`: "cohere"
  (`meta.billed_units.search_units`, one per 100 documents), "jina" (`usage.total_tokens`)
  or "siliconflow" (string documents only; `meta.tokens.input_tokens` and `meta.billed_units`).
  Token counts are the words of the query and the documents. Scores are the share of the
  query's words found in a document, highest first.

Scenarios: ok, no_usage (no usage anywhere), error_400 / error_429 / error_500,
drop_mid_stream (the socket is cut after the second text delta).
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, RecordedRequest, json_response
from tests.fakes.vertex_upstream import rand_id

__all__ = ["RERANK_STYLES", "SCENARIOS", "FakeResponses", "word_count"]

ERROR_SCENARIOS = frozenset({"error_400", "error_429", "error_500"})
SCENARIOS = ERROR_SCENARIOS | {"ok", "no_usage", "drop_mid_stream"}
RERANK_STYLES = frozenset({"cohere", "jina", "siliconflow"})
AZURE_V1_LABELS = frozenset({"preview", "latest"})
AZURE_RESPONSES_SINCE = "2025-03-01-preview"
DOCUMENTS_PER_SEARCH_UNIT = 100


class Invalid(Exception):
    pass


def word_count(text: str) -> int:
    return len(text.split())


def words(text: str) -> set[str]:
    return {word.lower() for word in re.findall(r"\w+", text)}


def pieces(text: str) -> list[str]:
    """Word-sized pieces (each with its leading space) that join back to the text."""
    return [piece for piece in re.split(r"(?<=\S)(?=\s)", text) if piece]


def document_text(document: Any) -> str:
    if isinstance(document, str):
        return document
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        return document["text"]
    raise Invalid("each document must be a string or an object with a text field")


def _error(status: int, message: str, kind: str, code: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return json_response(body, status)


class FakeResponses(FakeServer[RecordedRequest]):
    scenarios = SCENARIOS
    thread_name = "fake-responses"

    def __init__(
        self,
        api_key: str | None = "sk-upstream",
        reply: str = "Hello from the fake Responses API.",
        input_tokens: int = 12,
        output_tokens: int = 7,
        rerank_style: str = "cohere",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.api_key = api_key
        self.reply = reply
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.rerank_style = rerank_style
        # The ids of the answer being written (a fake serves one Responses request at a time).
        self.response_id = self.message_id = ""

    # ------------------------------------------------------------------ dispatch

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        endpoint = self._endpoint(recorded)
        if endpoint is None:
            return _error(
                404, f"Invalid URL ({recorded.method} {recorded.path})", "invalid_request_error"
            )
        refused = self._refused(endpoint, recorded)
        if refused is not None:
            return refused
        if not isinstance(recorded.json, dict):
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if scenario in ERROR_SCENARIOS:
            status = int(scenario.removeprefix("error_"))
            return _error(
                status,
                f"fake upstream error {status}",
                "server_error" if status >= 500 else "invalid_request_error",
            )
        try:
            if endpoint == "rerank":
                return json_response(self._rerank(recorded.json, scenario))
            return await self._respond(request, recorded.json, scenario)
        except Invalid as error:
            return _error(400, str(error), "invalid_request_error")

    @staticmethod
    def _endpoint(recorded: RecordedRequest) -> str | None:
        if recorded.method != "POST":
            return None
        return {
            "/v1/responses": "responses",
            "/openai/v1/responses": "azure_v1",
            "/openai/responses": "azure_dated",
            "/v1/rerank": "rerank",
        }.get(recorded.path)

    def _refused(self, endpoint: str, recorded: RecordedRequest) -> web.Response | None:
        """Authentication and, for Azure, the api-version each path takes."""
        if endpoint.startswith("azure"):
            if self.api_key is not None and recorded.headers.get("api-key") != self.api_key:
                return _error(
                    401,
                    "Access denied due to invalid subscription key.",
                    "invalid_request_error",
                    "401",
                )
            version = recorded.query.get("api-version", "")
            valid = (
                version in AZURE_V1_LABELS
                if endpoint == "azure_v1"
                else version.endswith("preview") and version >= AZURE_RESPONSES_SINCE
            )
            return (
                None
                if valid
                else _error(400, f"API version {version!r} not supported", "invalid_request_error")
            )
        if (
            self.api_key is not None
            and recorded.headers.get("authorization") != f"Bearer {self.api_key}"
        ):
            return _error(
                401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
            )
        return None

    # ------------------------------------------------------------------ responses

    def _usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def _response(
        self, payload: dict[str, Any], status: str, output: list[Any], usage: Any
    ) -> dict[str, Any]:
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": int(time.time()),
            "status": status,
            "error": None,
            "incomplete_details": None,
            "instructions": payload.get("instructions"),
            "max_output_tokens": payload.get("max_output_tokens"),
            "model": payload["model"],
            "output": output,
            "parallel_tool_calls": True,
            "previous_response_id": payload.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": payload.get("store", True),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": None,
            "metadata": {},
        }

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [{"type": "output_text", "annotations": [], "text": text}]
        return {
            "id": self.message_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": content,
        }

    @staticmethod
    def _validate(payload: dict[str, Any]) -> None:
        if not isinstance(payload.get("model"), str) or not payload["model"]:
            raise Invalid("Missing required parameter: 'model'.")
        if "messages" in payload:
            raise Invalid("Unknown parameter: 'messages'.")
        if not isinstance(payload.get("input"), str | list):
            raise Invalid("Missing required parameter: 'input'.")

    async def _respond(
        self, request: web.Request, payload: dict[str, Any], scenario: str
    ) -> web.StreamResponse:
        self._validate(payload)
        self.response_id, self.message_id = f"resp_{rand_id(32)}", f"msg_{rand_id(32)}"
        usage = None if scenario == "no_usage" else self._usage()
        if payload.get("stream") is not True:
            output = [self._message("completed", self.reply)]
            return json_response(self._response(payload, "completed", output, usage))
        return await self._stream(request, payload, usage, scenario)

    def _events(self, payload: dict[str, Any], usage: Any) -> list[dict[str, Any]]:
        """The whole event sequence of a one-message answer, without sequence numbers."""
        started = self._response(payload, "in_progress", [], None)
        where = {"item_id": self.message_id, "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "annotations": [], "text": ""}
        done_part = {**part, "text": self.reply}
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": started},
            {"type": "response.in_progress", "response": started},
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": self._message("in_progress", None),
            },
            {"type": "response.content_part.added", **where, "part": part},
        ]
        events += [
            {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
            for piece in pieces(self.reply)
        ]
        finished = self._message("completed", self.reply)
        events += [
            {"type": "response.output_text.done", **where, "text": self.reply, "logprobs": []},
            {"type": "response.content_part.done", **where, "part": done_part},
            {"type": "response.output_item.done", "output_index": 0, "item": finished},
            {
                "type": "response.completed",
                "response": self._response(payload, "completed", [finished], usage),
            },
        ]
        return events

    async def _stream(
        self, request: web.Request, payload: dict[str, Any], usage: Any, scenario: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        deltas = 0
        for number, event in enumerate(self._events(payload, usage)):
            event = {"type": event["type"], "sequence_number": number, **event}
            data = json.dumps(event, separators=(",", ":"))
            await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
            deltas += event["type"] == "response.output_text.delta"
            if scenario == "drop_mid_stream" and deltas == 2:
                if request.transport is not None:
                    request.transport.abort()  # a crashed upstream: no end of the body
                return response
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ rerank

    def _rerank(self, payload: dict[str, Any], scenario: str) -> dict[str, Any]:
        query, documents = payload.get("query"), payload.get("documents")
        if not isinstance(payload.get("model"), str) or not isinstance(query, str) or not query:
            raise Invalid("model and query are required")
        if not isinstance(documents, list) or not documents:
            raise Invalid("documents must be a non-empty list")
        if self.rerank_style == "siliconflow" and not all(isinstance(d, str) for d in documents):
            raise Invalid("documents must be a list of strings")
        texts = [document_text(document) for document in documents]
        wanted = words(query)
        scored = sorted(
            ((len(wanted & words(text)) / len(wanted), index) for index, text in enumerate(texts)),
            key=lambda pair: (-pair[0], pair[1]),
        )
        top_n = payload.get("top_n")
        if isinstance(top_n, int):
            scored = scored[:top_n]
        with_documents = payload.get("return_documents", self.rerank_style != "cohere")
        results = []
        for score, index in scored:
            result: dict[str, Any] = {"index": index, "relevance_score": score}
            if with_documents:
                result["document"] = {"text": texts[index]}
            results.append(result)
        tokens = word_count(query) + sum(word_count(text) for text in texts)
        return self._rerank_answer(results, tokens, len(texts), payload["model"], scenario)

    def _rerank_answer(
        self, results: list[Any], tokens: int, documents: int, model: str, scenario: str
    ) -> dict[str, Any]:
        answer: dict[str, Any] = {"id": f"rerank-{rand_id(16)}", "results": results}
        if self.rerank_style == "jina":
            answer = {"model": model, "results": results}
            if scenario != "no_usage":
                answer["usage"] = {"total_tokens": tokens}
        elif scenario == "no_usage":
            pass
        elif self.rerank_style == "cohere":
            units = math.ceil(documents / DOCUMENTS_PER_SEARCH_UNIT)
            answer["meta"] = {
                "api_version": {"version": "1"},
                "billed_units": {"search_units": units},
            }
        else:
            answer["meta"] = {
                "billed_units": {
                    "input_tokens": tokens,
                    "output_tokens": 0,
                    "search_units": 0,
                    "classifications": 0,
                },
                "tokens": {"input_tokens": tokens, "output_tokens": 0},
            }
        return answer
