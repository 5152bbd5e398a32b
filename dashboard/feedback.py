"""Telling the user how an action went: a toast for HTMX requests (the `HX-Trigger` header,
shown by app.js), a flash message for full-page requests (shown by the layout)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse

LEVELS = {"success": messages.SUCCESS, "info": messages.INFO, "error": messages.ERROR}


def toast(response: HttpResponse, level: str, text: str) -> HttpResponse:
    triggers = json.loads(response.headers.get("HX-Trigger", "{}") or "{}")
    triggers["toast"] = {"level": level, "message": str(text)}
    # ASCII only (\u escapes): a header with other characters would be MIME-encoded.
    response["HX-Trigger"] = json.dumps(triggers, ensure_ascii=True)
    return response


def flash(request: HttpRequest, level: str, text: str) -> None:
    messages.add_message(request, LEVELS[level], str(text))
