"""The menu: one list of entries, shown to the roles that may open them.

An entry names a URL by its name; entries whose URL does not exist yet are left out, so the
admin entries below appear by themselves once their pages are added to `dashboard/urls.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts.models import Role, User


@dataclass(frozen=True)
class NavItem:
    url_name: str
    label: str | Promise
    icon: str
    min_role: int = Role.COMMON  # Role.GUEST: shown to everyone, signed in or not
    section: str = "console"  # "site" (public pages) or "console" (signed-in pages) or "admin"


@dataclass(frozen=True)
class NavLink:
    url: str
    label: str | Promise
    icon: str
    section: str
    current: bool


ITEMS: list[NavItem] = [
    NavItem("dashboard:home", _("Home"), "home", Role.GUEST, "site"),
    NavItem("dashboard:about", _("About"), "info", Role.GUEST, "site"),
    NavItem("dashboard:overview", _("Dashboard"), "chart"),
    NavItem("dashboard:tokens", _("API keys"), "key"),
    NavItem("dashboard:logs", _("Logs"), "list"),
    NavItem("dashboard:topup", _("Top up"), "wallet"),
    NavItem("dashboard:models", _("Available models"), "cube"),
    NavItem("dashboard:settings", _("Settings"), "cog"),
    # Admin pages: listed once their URL names exist.
    NavItem("dashboard:channels", _("Channels"), "server", Role.ADMIN, "admin"),
    NavItem("dashboard:users", _("Users"), "users", Role.ADMIN, "admin"),
    NavItem("dashboard:redemptions", _("Redemption codes"), "ticket", Role.ADMIN, "admin"),
    NavItem("dashboard:system-settings", _("System settings"), "sliders", Role.ROOT, "admin"),
]


def register(item: NavItem, *, before: str | None = None) -> None:
    """Add an entry (before the entry with URL name `before`, else at the end)."""
    names = [existing.url_name for existing in ITEMS]
    ITEMS.insert(names.index(before) if before in names else len(ITEMS), item)


def _url(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def links(request: HttpRequest, user: User | None) -> list[NavLink]:
    role = user.role if user is not None else Role.GUEST
    path = request.path
    result = []
    for item in ITEMS:
        if role < item.min_role:
            continue
        url = _url(item.url_name)
        if url is None:
            continue
        current = path == url if url == "/" else path == url or path.startswith(url + "/")
        result.append(NavLink(url, item.label, item.icon, item.section, current))
    # Only the closest entry is current: /setting/system is System settings, not Settings.
    closest = max((len(link.url) for link in result if link.current), default=0)
    return [replace(link, current=link.current and len(link.url) == closest) for link in result]
