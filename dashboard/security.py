"""The protections `/api` puts on its login routes, applied to the page forms too: the same
per-IP limit (shared counters, so switching between the two gains nothing) and Turnstile."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.translation import gettext as _

from accounts import turnstile
from oneapi import options
from oneapi.api import ApiError, CriticalThrottle

TURNSTILE_FIELD = "cf-turnstile-response"  # what Cloudflare's widget adds to the form


def check_rate(request: HttpRequest) -> None:
    """20 attempts per 20 minutes per IP, counted with `/api`'s login, register, reset."""
    throttle = CriticalThrottle()
    if throttle.limit() and not throttle.allow_request(request, None):  # type: ignore[arg-type]
        raise ApiError(_("Too many attempts; wait a few minutes and try again."), status=429)


def check_turnstile(request: HttpRequest) -> None:
    """As `accounts.turnstile.check`, with the token the widget posts in the form."""
    if not options.get_bool("TurnstileCheckEnabled") or request.session.get(turnstile.SESSION_KEY):
        return
    token = request.POST.get(TURNSTILE_FIELD, "")
    if not token:
        raise ApiError(turnstile.TOKEN_MISSING)
    if not turnstile.verify(token, request.META.get("REMOTE_ADDR", "")):
        raise ApiError(turnstile.CHECK_FAILED)
    request.session[turnstile.SESSION_KEY] = True
