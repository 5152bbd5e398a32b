from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import re
import secrets
import struct
import time
from typing import Any

from aiohttp import web

from tests.fakes.openai_upstream import (
    DEFAULT_SPEECH_AUDIO,
    TINY_PNG,
    RecordedRequest,
    embedding_vector,
    split_text,
)
from tests.fakes.server import FakeServer, json_object, lower_headers

# A fake Azure OpenAI resource: a real HTTP server speaking Azure's data-plane API.
#
#     with FakeAzure(api_key="azure-key", deployments={"gpt-35-turbo": "gpt-35-turbo"}) as fake:
#         ...  # point an Azure channel at fake.base_url
#         assert fake.last_request.query["api-version"] == "2024-10-21"
#
# Routes are Azure's: POST /openai/deployments/{deployment}/{task}?api-version=... with the
# key in the `api-key` header. It is as strict as Azure where a gateway can go wrong: the
# path, the deployment name (no dots: Azure's gpt-3.5 deployments are `gpt-35-turbo`), an
# api-version Azure knows, `stream_options` only from 2024-09-01 on, and the operations each
# deployed model can do. Errors have Azure's shapes (`{"error": {"code", "message"}}`, no
# type); streams have Azure's quirks: a first chunk with no choices carrying
# `prompt_filter_results`, `content_filter_results` on the choices. Like the other fakes it
# runs its own event loop in a daemon thread.

__all__ = ["API_VERSIONS", "SCENARIOS", "FakeAzure"]

API_VERSIONS = frozenset(
    {
        "2023-05-15",
        "2023-06-01-preview",
        "2023-12-01-preview",
        "2024-02-01",
        "2024-02-15-preview",
        "2024-03-01-preview",
        "2024-04-01-preview",
        "2024-05-01-preview",
        "2024-06-01",
        "2024-07-01-preview",
        "2024-08-01-preview",
        "2024-09-01-preview",
        "2024-10-01-preview",
        "2024-10-21",
        "2024-12-01-preview",
        "2025-01-01-preview",
        "2025-03-01-preview",
        "2025-04-01-preview",
    }
)
STREAM_OPTIONS_SINCE = "2024-09-01"
SCENARIOS = frozenset({"ok", "prompt_filtered", "output_filtered", "error_429", "error_500"})
TASKS = frozenset(
    {
        "chat/completions",
        "completions",
        "embeddings",
        "images/generations",
        "images/edits",
        "audio/speech",
        "audio/transcriptions",
        "audio/translations",
    }
)
PATH = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/(?P<task>.+)$")

MSG_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
    "provide a valid key for an active subscription and use a correct regional API endpoint "
    "for your resource."
)
MSG_DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment "
    "within the last 5 minutes, please wait a moment and try again."
)
MSG_PROMPT_FILTERED = (
    "The response was filtered due to the prompt triggering Azure OpenAI's content management "
    "policy. Please modify your prompt and retry. To learn more about our content filtering "
    "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766"
)
SAFE = {"filtered": False, "severity": "safe"}
FILTER_RESULTS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
FILTERED_RESULTS = {**FILTER_RESULTS, "violence": {"filtered": True, "severity": "high"}}


def operations_of(model: str) -> frozenset[str]:
    """What a deployed model can do; anything else is Azure's OperationNotSupported."""
    if model.startswith("text-embedding"):
        return frozenset({"embeddings"})
    if model.startswith(("dall-e", "gpt-image")):
        return frozenset({"images/generations", "images/edits"})
    if model.startswith("whisper"):
        return frozenset({"audio/transcriptions", "audio/translations"})
    if model.startswith("tts"):
        return frozenset({"audio/speech"})
    if model.endswith("instruct"):
        return frozenset({"completions"})
    return frozenset({"chat/completions"})


def azure_error(http_status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **extra}}
    return web.json_response(body, status=http_status)


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, Any]]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    form: dict[str, str] = {}
    files: dict[str, tuple[str, bytes]] = {}
    if not message.is_multipart():
        return form, files
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        content = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(content, bytes):
            continue
        filename = part.get_filename()
        if filename is not None:
            files[name] = (filename, content)
        else:
            form[name] = content.decode("utf-8", errors="replace")
    return form, files


class FakeAzure(FakeServer[RecordedRequest]):
    """A local Azure OpenAI resource; public attributes may change between requests."""

    scenarios = SCENARIOS
    thread_name = "fake-azure"
    client_max_size = 64 * 1024 * 1024  # audio uploads

    def __init__(
        self,
        api_key: str,
        deployments: dict[str, str],
        reply: str = "Hello from fake Azure.",
        prompt_tokens: int = 12,
        completion_tokens: int = 6,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(host)
        self.api_key = api_key
        self.deployments = dict(deployments)  # deployment name -> model deployed
        self.reply = reply
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.transcript = reply
        self.speech_audio = DEFAULT_SPEECH_AUDIO
        self.embedding_dimensions = 8
        self.retry_after = 3

    # ------------------------------------------------------------------ checks

    async def route(
        self, request: web.Request, recorded: RecordedRequest, scenario: str
    ) -> web.StreamResponse:
        if request.headers.get("api-key") != self.api_key:
            return azure_error(401, "401", MSG_ACCESS_DENIED)
        match = PATH.match(request.path)
        version = request.query.get("api-version")
        if request.method != "POST" or match is None or match["task"] not in TASKS:
            return azure_error(404, "404", "Resource not found")
        if version is None or version not in API_VERSIONS:
            return azure_error(404, "404", "Resource not found")
        model = self.deployments.get(match["deployment"])
        if model is None:
            return azure_error(404, "DeploymentNotFound", MSG_DEPLOYMENT_NOT_FOUND)
        task = match["task"]
        if task not in operations_of(model):
            operation = task.rsplit("/", 1)[-1]
            return azure_error(
                400,
                "OperationNotSupported",
                f"The {operation} operation does not work with the specified model, {model}. "
                "Please choose different model and try again.",
            )
        payload = recorded.json or {}
        if "stream_options" in payload and version[:10] < STREAM_OPTIONS_SINCE:
            return web.json_response(
                {
                    "error": {
                        "message": "Unrecognized request argument supplied: stream_options",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
                status=400,
            )
        failure = self._scenario_failure(task, version, scenario)
        if failure is not None:
            return failure
        if task in ("chat/completions", "completions"):
            if recorded.json is None:
                return azure_error(400, "BadRequest", "Invalid JSON body")
            if payload.get("stream"):
                return await self._stream(request, task, model, payload, scenario)
            return web.json_response(self._completion(task, model, scenario))
        if task == "embeddings":
            return self._embeddings(model, payload)
        if task.startswith("images/"):
            params = payload if recorded.json is not None else dict(recorded.form or {})
            return self._images(params)
        if task == "audio/speech":
            return web.Response(body=self.speech_audio, content_type="audio/mpeg")
        return self._transcription(recorded)

    def _record(self, request: web.Request, body: bytes) -> RecordedRequest:
        content_type = request.headers.get("Content-Type", "")
        parsed: dict[str, Any] | None = None
        form: dict[str, Any] | None = None
        files: dict[str, tuple[str, bytes]] = {}
        if content_type.startswith("multipart/form-data"):
            form, files = parse_form(content_type, body)
        else:
            parsed = json_object(body)
        return RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=lower_headers(request),
            body=body,
            json=parsed,
            form=form,
            files=files,
        )

    def _scenario_failure(self, task: str, version: str, scenario: str) -> web.Response | None:
        if scenario == "prompt_filtered":
            return azure_error(
                400,
                "content_filter",
                MSG_PROMPT_FILTERED,
                param="prompt",
                status=400,
                innererror={
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": FILTERED_RESULTS,
                },
            )
        if scenario == "error_429":
            operation = "ChatCompletions_Create" if task == "chat/completions" else task
            response = azure_error(
                429,
                "429",
                f"Requests to the {operation} Operation under Azure OpenAI API version "
                f"{version} have exceeded token rate limit of your current OpenAI S0 pricing "
                f"tier. Please retry after {self.retry_after} seconds.",
            )
            response.headers["Retry-After"] = str(self.retry_after)
            return response
        if scenario == "error_500":
            return azure_error(500, "InternalServerError", "The server had an error.")
        return None

    # ------------------------------------------------------------------ answers

    def _usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }

    def _prompt_filter_results(self) -> list[dict[str, Any]]:
        return [{"prompt_index": 0, "content_filter_results": FILTER_RESULTS}]

    def _completion(self, task: str, model: str, scenario: str) -> dict[str, Any]:
        filtered = scenario == "output_filtered"
        finish = "content_filter" if filtered else "stop"
        results = FILTERED_RESULTS if filtered else FILTER_RESULTS
        content = None if filtered else self.reply
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if task == "chat/completions":
            choice["message"] = {"role": "assistant", "content": content}
            kind, prefix = "chat.completion", "chatcmpl-"
        else:
            choice["text"] = content or ""
            kind, prefix = "text_completion", "cmpl-"
        choice["content_filter_results"] = results
        return {
            "id": prefix + secrets.token_hex(12),
            "object": kind,
            "created": int(time.time()),
            "model": model,
            "prompt_filter_results": self._prompt_filter_results(),
            "choices": [choice],
            "system_fingerprint": "fp_azure01",
            "usage": self._usage(),
        }

    async def _stream(
        self,
        request: web.Request,
        task: str,
        model: str,
        payload: dict[str, Any],
        scenario: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8"}
        )
        await response.prepare(request)
        completion_id = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())
        chat = task == "chat/completions"

        async def send(event: dict[str, Any] | str) -> None:
            data = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
            await response.write(f"data: {data}\n\n".encode())

        def chunk(choice: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": completion_id,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_azure01",
                "choices": [choice],
            }

        # Azure's first event: no choices, only the prompt's filter results, blank fields.
        await send(
            {
                "choices": [],
                "created": 0,
                "id": "",
                "model": "",
                "object": "",
                "prompt_filter_results": self._prompt_filter_results(),
            }
        )
        filtered = scenario == "output_filtered"
        pieces = [] if filtered else split_text(self.reply)
        if chat:
            head = {"index": 0, "delta": {"role": "assistant", "content": ""}}
            await send(chunk({**head, "finish_reason": None, "content_filter_results": {}}))
        for piece in pieces:
            body = {"delta": {"content": piece}} if chat else {"text": piece}
            choice = {"index": 0, **body, "finish_reason": None}
            await send(chunk({**choice, "content_filter_results": FILTER_RESULTS}))
        finish = "content_filter" if filtered else "stop"
        last = {"index": 0, "finish_reason": finish}
        last.update({"delta": {}} if chat else {"text": ""})
        await send(chunk({**last, "content_filter_results": FILTERED_RESULTS if filtered else {}}))
        options = payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            await send({**chunk({}), "choices": [], "usage": self._usage()})
        await send("[DONE]")
        await response.write_eof()
        return response

    def _embeddings(self, model: str, payload: dict[str, Any]) -> web.Response:
        raw = payload.get("input")
        items = raw if isinstance(raw, list) else [raw]
        dimensions = self.embedding_dimensions
        data = []
        for index, item in enumerate(items):
            vector: list[float] | str = embedding_vector(item, dimensions)
            if payload.get("encoding_format") == "base64":
                packed = struct.pack(f"<{dimensions}f", *vector)
                vector = base64.b64encode(packed).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        usage = {"prompt_tokens": self.prompt_tokens, "total_tokens": self.prompt_tokens}
        return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})

    def _images(self, params: dict[str, Any]) -> web.Response:
        n = int(params.get("n") or 1)
        data = []
        for _ in range(n):
            item: dict[str, Any] = {
                "revised_prompt": f"A picture of {params.get('prompt', '')}",
                "content_filter_results": FILTER_RESULTS,
                "prompt_filter_results": FILTER_RESULTS,
            }
            if params.get("response_format") == "b64_json":
                item["b64_json"] = base64.b64encode(TINY_PNG).decode()
            else:
                item["url"] = f"{self.base_url}/images/{secrets.token_hex(8)}.png"
            data.append(item)
        return web.json_response({"created": int(time.time()), "data": data})

    def _transcription(self, recorded: RecordedRequest) -> web.Response:
        form = recorded.form or {}
        if "file" not in recorded.files:
            return azure_error(400, "invalid_request_error", "'file' is a required property")
        response_format = form.get("response_format") or "json"
        if response_format == "text":
            return web.Response(text=f"{self.transcript}\n", content_type="text/plain")
        if response_format == "verbose_json":
            return web.json_response(
                {
                    "task": "transcribe",
                    "language": "english",
                    "duration": 1.5,
                    "text": self.transcript,
                }
            )
        return web.json_response({"text": self.transcript})
