"""Token counts when the upstream gives none: tiktoken, or One API's approximation."""

from __future__ import annotations

from typing import Any

import orjson

from oneapi.options import OptionSnapshot
from relay.tokens import count_text_tokens

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3
# An image part without fetching the image: OpenAI's price of a 512x512 high-detail tile
# plus the base, the commonest size. One API downloads every image to measure it; an
# estimate serves the only two uses (the reservation, and a count when usage is missing).
IMAGE_PART_TOKENS = 85 + 170


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
                tokens += IMAGE_PART_TOKENS
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
