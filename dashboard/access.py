"""Who may open a page. The same session as `/api` (the `session` cookie): a user logged in
on one is logged in on the other."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django_htmx.http import HttpResponseClientRedirect

from accounts.auth_services import session_user
from accounts.models import Role, User, UserStatus

View = Callable[..., HttpResponse]


def viewer(request: HttpRequest) -> User | None:
    """The signed-in user of this request, or None."""
    return session_user(request)


def redirect(request: HttpRequest, url: str) -> HttpResponse:
    """A redirect that also works for HTMX requests (which would swap the target in place)."""
    if getattr(request, "htmx", False) and not request.htmx.boosted:
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)


def login_url(request: HttpRequest) -> str:
    return f"{reverse('dashboard:login')}?{urlencode({'next': request.get_full_path()})}"


def safe_next(request: HttpRequest, default: str) -> str:
    """`?next=` when it points back into this site, else `default`."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else default


def login_required(view: View) -> View:
    """Signed-in and enabled users only; a disabled user's session is ended (as `/api`)."""

    @wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user = viewer(request)
        if user is None:
            return redirect(request, login_url(request))
        if user.status != UserStatus.ENABLED:
            logout(request)
            messages.error(request, _("This account is disabled."))
            return redirect(request, reverse("dashboard:login"))
        return view(request, *args, **kwargs)

    return guarded


def role_required(min_role: int) -> Callable[[View], View]:
    """Signed in with at least `min_role`; lower roles get the themed 403 page."""

    def decorate(view: View) -> View:
        @login_required
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = viewer(request)
            if user is None or user.role < min_role:
                # Imported here: rendering imports this module (through context).
                from dashboard.rendering import render_page

                return render_page(request, "errors/forbidden.html", status=403)
            return view(request, *args, **kwargs)

        return guarded

    return decorate


admin_required = role_required(Role.ADMIN)
root_required = role_required(Role.ROOT)
