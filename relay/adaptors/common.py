"""Small pieces several adaptor families share (kept here so no family imports another)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import orjson

from relay.adaptors.base import Attempt


def client_payload(attempt: Attempt) -> dict[str, Any]:
    """The client's own request body, for the few fields the answer depends on."""
    try:
        payload = orjson.loads(attempt.request.body or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return payload if isinstance(payload, dict) else {}


def encode_embedding(values: list[float], encoding_format: Any) -> list[float] | str:
    """OpenAI's `base64` encoding (little-endian float32), which its SDKs ask for by default."""
    if encoding_format != "base64":
        return values
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()


def openai_embedding_list(
    data: dict[str, Any], model: str, encoding_format: Any = None
) -> dict[str, Any]:
    """An OpenAI-shaped embeddings answer (`data[].embedding`, `usage.prompt_tokens`) from an
    upstream that speaks almost OpenAI's format, re-encoded as the client asked."""
    items = []
    for position, item in enumerate(data.get("data") or ()):
        if not isinstance(item, dict):
            continue
        vector = item.get("embedding") if isinstance(item.get("embedding"), list) else []
        index = item.get("index")
        items.append(
            {
                "object": "embedding",
                "index": index if isinstance(index, int) else position,
                "embedding": encode_embedding(vector, encoding_format),
            }
        )
    result: dict[str, Any] = {"object": "list", "data": items, "model": data.get("model") or model}
    usage = data.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
        prompt = usage["prompt_tokens"]
        total = usage.get("total_tokens")
        result["usage"] = {
            "prompt_tokens": prompt,
            "total_tokens": total if isinstance(total, int) else prompt,
        }
    return result
