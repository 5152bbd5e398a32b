"""Token counts when the upstream gives none: tiktoken, or One API's approximation."""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson

from oneapi.options import OptionSnapshot
from relay import images
from relay.tokens import count_text_tokens

logger = logging.getLogger(__name__)

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# A Responses API image part, which is not fetched: OpenAI's price of one 512x512
# high-detail tile plus the base, the commonest size.
IMAGE_PART_TOKENS = 85 + 170
# OpenAI's vision prices as One API has them (relay/adaptor/openai/token.go): low detail is
# a flat price, high (and auto, which One API found billed as high) is per 512px tile plus
# a base; gpt-4o-mini's are about 33 times higher.
IMAGE_LOW_DETAIL_TOKENS = 85
IMAGE_TILE_TOKENS = 170
IMAGE_BASE_TOKENS = 85
MINI_LOW_DETAIL_TOKENS = 2833
MINI_TILE_TOKENS = 5667
MINI_BASE_TOKENS = 2833
IMAGE_DETAILS = frozenset({"", "auto", "low", "high"})


def image_tokens(width: int, height: int, detail: str, model: str) -> int:
    """OpenAI's formula: fit within 2048x2048, then the shortest side down to 768, then
    count 512px tiles (One API's integer truncation after each scaling kept)."""
    mini = model.startswith("gpt-4o-mini")
    if detail == "low":
        return MINI_LOW_DETAIL_TOKENS if mini else IMAGE_LOW_DETAIL_TOKENS
    if width > 2048 or height > 2048:
        ratio = 2048 / max(width, height)
        width, height = int(width * ratio), int(height * ratio)
    if width > 768 and height > 768:
        ratio = 768 / min(width, height)
        width, height = int(width * ratio), int(height * ratio)
    tiles = math.ceil(width / 512) * math.ceil(height / 512)
    if mini:
        return tiles * MINI_TILE_TOKENS + MINI_BASE_TOKENS
    return tiles * IMAGE_TILE_TOKENS + IMAGE_BASE_TOKENS


def _local_image_tokens(part: dict[str, Any], model: str) -> int:
    """An image part's tokens when no fetch is needed; remote high-detail images count
    here as nothing (`count_remote_images` adds them), and so does any image that cannot
    be measured, as in One API, which logs it."""
    reference = images.image_reference(part)
    if reference is None:
        return 0
    url, detail = reference
    if detail not in IMAGE_DETAILS:
        logger.info("image part not counted: invalid detail %r", detail)
        return 0
    if detail == "low":
        return image_tokens(0, 0, detail, model)
    if images.is_remote(url):
        return 0
    try:
        width, height = images.image_size(url)
    except images.ImageFetchError as error:
        logger.info("image part not counted: %s", error)
        return 0
    return image_tokens(width, height, detail, model)


async def count_remote_images(messages: Any, model: str) -> int:
    """The tokens of the http(s) images in chat messages, each fetched (concurrently, only
    as far as its header) to learn its size. An image that cannot be fetched counts as
    nothing, as in One API: the count only sizes the reservation when the upstream
    reports usage."""
    parts = [
        (url, detail)
        for url, detail in images.image_parts(messages)
        if images.is_remote(url) and detail in IMAGE_DETAILS and detail != "low"
    ]
    urls = list(dict.fromkeys(url for url, _ in parts))[: images.MAX_REMOTE_IMAGES]
    if not urls:
        return 0
    sizes: dict[str, tuple[int, int]] = {}
    for url, result in zip(urls, await images.measure_all(urls), strict=True):
        if isinstance(result, images.ImageFetchError):
            logger.info("image part not counted: %s", result)
        else:
            sizes[url] = result
    return sum(image_tokens(*sizes[url], detail, model) for url, detail in parts if url in sizes)


def count_text(text: str, model: str, options: OptionSnapshot) -> int:
    if not text:
        return 0
    if options.get_bool("ApproximateTokenEnabled"):
        return int(len(text) * 0.38)
    return count_text_tokens(text, model)


def _content_tokens(content: Any, model: str, options: OptionSnapshot) -> int:
    if isinstance(content, str):
        return count_text(content, model, options)
    tokens = 0
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                tokens += count_text(part["text"], model, options)
            elif part.get("type") in ("image_url", "input_image"):
                tokens += _local_image_tokens(part, model)
    return tokens


def count_messages(messages: Any, model: str, options: OptionSnapshot) -> int:
    """One API's `CountTokenMessages`: 3 per message, 1 per name, 3 to prime the reply."""
    if not isinstance(messages, list):
        return 0
    per_message, per_name = TOKENS_PER_MESSAGE, TOKENS_PER_NAME
    if model == "gpt-3.5-turbo-0301":
        per_message, per_name = 4, -1
    tokens = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        tokens += per_message
        tokens += _content_tokens(message.get("content"), model, options)
        if isinstance(message.get("role"), str):
            tokens += count_text(message["role"], model, options)
        if isinstance(message.get("name"), str):
            tokens += per_name + count_text(message["name"], model, options)
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            if isinstance(call, dict):
                tokens += count_text(orjson.dumps(call).decode(), model, options)
    return tokens + REPLY_PRIMING_TOKENS


def count_input(value: Any, model: str, options: OptionSnapshot) -> int:
    """A `prompt` or `input`: a string, a list of strings, or token arrays."""
    if isinstance(value, str):
        return count_text(value, model, options)
    if isinstance(value, list):
        if value and all(isinstance(item, int) for item in value):
            return len(value)
        return sum(count_input(item, model, options) for item in value)
    return 0


def count_tools(payload: dict[str, Any], model: str, options: OptionSnapshot) -> int:
    """Tool definitions count as prompt text (One API ignores them and under-reserves)."""
    tools = payload.get("tools") or payload.get("functions")
    if not tools:
        return 0
    return count_text(orjson.dumps(tools).decode(), model, options)


def completion_text(response: dict[str, Any]) -> str:
    """Everything generated in a non-stream chat or completions response."""
    parts: list[str] = []
    for choice in response.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            parts.append(choice["text"])
        message = choice.get("message")
        if not isinstance(message, dict):
            continue
        for name in ("content", "reasoning_content", "reasoning"):
            if isinstance(message.get(name), str):
                parts.append(message[name])
        calls = message.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                for name in ("name", "arguments"):
                    if isinstance(function.get(name), str):
                        parts.append(function[name])
    return "".join(parts)


def tokens_from_usage(usage: Any, counted_prompt: int) -> tuple[int, int] | None:
    """(prompt, completion) from an upstream usage object, One API's way: when only the
    total is given, the prompt is our count and the completion the rest."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    total = usage.get("total_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    if isinstance(prompt, int) and isinstance(total, int):
        return prompt, max(total - prompt, 0)
    if isinstance(total, int):
        return counted_prompt, max(total - counted_prompt, 0)
    return None
