"""Template helpers of the console: `{% load console %}`."""

from __future__ import annotations

import datetime as dt

from django import template
from django.template.backends.django import Template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from dashboard import display, themes

register = template.Library()


@register.filter
def themed(name: str) -> Template:
    """`{% include "partials/pager.html"|themed %}`: the template of the current theme, or
    the default theme's. (Pages extend `layout`: `{% extends %}` must come before any load.)"""
    return themes.resolve(name)


@register.filter
def quota(value: int | float | None, digits: int = 2) -> str:
    return display.quota(value or 0, digits)


@register.filter
def number(value: int | None) -> str:
    return display.tokens(value or 0)


@register.filter
def unixtime(value: int | None) -> dt.datetime | None:
    """A unix timestamp as an aware datetime in the current time zone (None for 0 / -1)."""
    if not value or value < 0:
        return None
    return timezone.localtime(dt.datetime.fromtimestamp(value, tz=dt.UTC))


@register.filter
def seconds(milliseconds: int | None) -> str:
    return f"{(milliseconds or 0) / 1000:.1f} s"


# 24×24 stroke icons, drawn for this console.
_ICONS = {
    "home": "M3 11l9-7 9 7v9a1 1 0 0 1-1 1h-5v-6H9v6H4a1 1 0 0 1-1-1z",
    "info": "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM12 11v6M12 7.5v.5",
    "chart": "M4 20V10M10 20V4M16 20v-7M21 20H3",
    "key": "M14 10a4 4 0 1 0-3.5 4L12 16h2v2h2v2h3v-3l-5.1-5.1A4 4 0 0 0 14 10z",
    "list": "M8 6h13M8 12h13M8 18h13M3.5 6h.5M3.5 12h.5M3.5 18h.5",
    "wallet": "M3 7h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H3zM3 7l12-4v4M16 14h.5",
    "cube": "M12 3l8 4.5v9L12 21l-8-4.5v-9zM12 12l8-4.5M12 12v9M12 12L4 7.5",
    "cog": "M12 9a3 3 0 1 0 0 6 3 3 0 0 0 0-6zM12 2v3M12 19v3M2 12h3M19 12h3M4.9 4.9l2.1 2.1"
    "M17 17l2.1 2.1M4.9 19.1L7 17M17 7l2.1-2.1",
    "server": "M4 4h16v6H4zM4 14h16v6H4zM8 7h.5M8 17h.5",
    "users": "M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM2 21a7 7 0 0 1 14 0M16 3.5a4 4 0 0 1 0 7.5"
    "M18 14a7 7 0 0 1 4 7",
    "ticket": "M3 7h18v4a2 2 0 0 0 0 4v4H3v-4a2 2 0 0 0 0-4zM14 7v12",
    "sliders": "M4 6h10M18 6h2M4 12h4M12 12h8M4 18h12M20 18h0M14 4v4M8 10v4M16 16v4",
    "logout": "M15 4h4a1 1 0 0 1 1 1v14a1 1 0 0 1-1 1h-4M10 17l5-5-5-5M15 12H3",
    "copy": "M9 9h11v11H9zM5 15H4V4h11v1",
    "globe": "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18zM3 12h18M12 3c3 3.5 3 14.5 0 18"
    "M12 3c-3 3.5-3 14.5 0 18",
    "menu": "M3 6h18M3 12h18M3 18h18",
    "close": "M6 6l12 12M18 6L6 18",
}


@register.simple_tag
def icon(name: str, label: str = "") -> SafeString:
    """An inline SVG icon; decorative unless a `label` is given."""
    path = _ICONS.get(name)
    if path is None:
        return mark_safe("")  # noqa: S308 (empty)
    if label:
        return format_html(
            '<svg class="icon" viewBox="0 0 24 24" role="img" aria-label="{}"><path d="{}"/></svg>',
            label,
            path,
        )
    return format_html(
        '<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">'
        '<path d="{}"/></svg>',
        path,
    )
