"""The `/api` body parser (its own module: DRF reads it while `rest_framework.views` loads)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    """DRF's parser catches ValueError only; a deeply nested body raises RecursionError."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON nested too deeply") from None
        if contains_nul(data):
            # PostgreSQL refuses NUL in text; no field of ours has a use for it.
            raise exceptions.ParseError("NUL characters are not allowed")
        return data


def contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_nul(item) for item in value)
    return False
