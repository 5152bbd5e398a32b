"""Structured logs: one JSON object per line, each carrying the relay request id it belongs to.

`LOG_FORMAT=json` selects `JsonFormatter` in settings.LOGGING. The relay sets
`request_id_var` for the duration of each request (`relay.http.RelayApp`); contextvars follow
the request into its tasks and into `sync_to_async` threads, and `RequestIdFilter` (on every
handler) copies it onto each record, so any line logged while serving a request names it.
Imports nothing of Django: logging.config loads it while django.setup() is under way.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

request_id_var: ContextVar[str | None] = ContextVar("oneapi_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Adds `record.request_id` (None outside a request); an explicit `extra` one wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """time (local, ISO 8601 with offset), level, logger, message, then request_id and
    exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: a message never fails to log because of what it was given.
        return orjson.dumps(entry, default=str).decode()


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, tz=UTC).astimezone().isoformat(timespec="milliseconds")
