"""What every page shows around its content: the site's name, logo, notice and footer (from
the options), the menu, the signed-in user, the theme and the languages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.safestring import SafeString

from accounts.models import User
from dashboard import access, display, markup, navigation, themes
from oneapi import options


@dataclass(frozen=True)
class Site:
    name: str
    logo: str
    notice: markup.Content
    footer: SafeString
    version: str
    top_up_link: str
    chat_link: str


@dataclass(frozen=True)
class Theme:
    name: str
    stylesheet: str


def site() -> Site:
    snapshot = options.snapshot()
    return Site(
        name=snapshot.get_str("SystemName") or "One API",
        logo=snapshot.get_str("Logo"),
        notice=markup.option_content(snapshot.get_str("Notice")),
        footer=markup.sanitize(snapshot.get_str("Footer")),
        version=settings.VERSION,
        top_up_link=snapshot.get_str("TopUpLink"),
        chat_link=snapshot.get_str("ChatLink"),
    )


def site_context(request: HttpRequest) -> dict[str, Any]:
    user: User | None = access.viewer(request)
    theme = themes.current()
    nav = navigation.links(request, user)
    return {
        "site": site(),
        "theme": Theme(theme, themes.stylesheet(theme)),
        "viewer": user,
        "nav_site": [link for link in nav if link.section == "site"],
        "nav_console": [link for link in nav if link.section == "console"],
        "nav_admin": [link for link in nav if link.section == "admin"],
        "languages": settings.LANGUAGES,
        "viewer_quota": display.quota(user.quota) if user is not None else "",
    }
