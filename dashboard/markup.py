"""Option texts shown as pages (HomePageContent, About, Notice, Footer), made safe to embed.

As in One API, a text that is just an http(s) URL is shown in an iframe; anything else is
Markdown, which may contain raw HTML. Either way the HTML is sanitized (nh3: an allow-list
of tags and attributes, no scripts, no event handlers, no `javascript:` links).
"""

from __future__ import annotations

from dataclasses import dataclass

import markdown
import nh3
from django.utils.safestring import SafeString, mark_safe

_MARKDOWN_EXTENSIONS = ("extra", "sane_lists")


@dataclass(frozen=True)
class Content:
    html: SafeString = mark_safe("")  # noqa: S308 (empty)
    iframe_url: str = ""

    @property
    def empty(self) -> bool:
        return not self.html and not self.iframe_url


def is_url(text: str) -> bool:
    return text.startswith(("https://", "http://")) and not any(c.isspace() for c in text)


def sanitize(html: str) -> SafeString:
    return mark_safe(nh3.clean(html, link_rel="noopener noreferrer"))  # noqa: S308 (cleaned)


def render_markdown(text: str) -> SafeString:
    return sanitize(markdown.markdown(text, extensions=list(_MARKDOWN_EXTENSIONS)))


def option_content(text: str) -> Content:
    text = text.strip()
    if not text:
        return Content()
    if is_url(text):
        return Content(iframe_url=text)
    return Content(html=render_markdown(text))
