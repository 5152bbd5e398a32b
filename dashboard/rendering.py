"""Answering with a page of the current theme, whole or only the part an HTMX request asks
for. Every URL answers a full page to a plain request (a reload, a bookmark, no JavaScript,
htmx's history restore), and to a boosted one."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.cache import patch_vary_headers

from dashboard import themes
from dashboard.context import site_context


def wants_fragment(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render_page(
    request: HttpRequest,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    fragment: str | None = None,
    status: int = 200,
) -> TemplateResponse:
    """`template` (a name inside the theme folder), or `fragment` for an HTMX request."""
    name = fragment if fragment and wants_fragment(request) else template
    response = TemplateResponse(
        request,
        themes.template_names(name),
        # `layout`: what pages extend (`{% extends layout %}`), the theme's base.html.
        {**site_context(request), "layout": themes.resolve("base.html"), **(context or {})},
        status=status,
    )
    # The same URL answers a page or a fragment: caches must keep them apart.
    patch_vary_headers(response, ("HX-Request",))
    return response


def render_fragment(
    request: HttpRequest, fragment: str, context: dict[str, Any] | None = None
) -> TemplateResponse:
    """Only a part (a table row after an inline edit, a form's status line)."""
    return render_page(request, fragment, context)
