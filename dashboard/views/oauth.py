"""Signing in (or binding, when signed in) with GitHub, Feishu and WeChat.

The start views send the browser to the provider with a state kept in the session; the
provider sends it back to `/oauth/github` or `/oauth/lark` (One API's callback paths, which
the OAuth apps are registered with), where `accounts.oauth` exchanges the code.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from accounts import auth_services, oauth, wechat
from accounts.oauth import Identity
from dashboard import access, security
from dashboard.rendering import render_page
from dashboard.service_errors import explain
from oneapi import options
from oneapi.api import ApiError


def _failed(request: HttpRequest, failure: ApiError) -> HttpResponse:
    return render_page(request, "auth/oauth_failed.html", {"error": explain(failure)}, status=400)


def _finish(request: HttpRequest, identity: Identity) -> HttpResponse:
    if auth_services.oauth_sign_in(request, identity) is None:
        messages.success(
            request,
            _("Your %(service)s account is now bound.")
            % {"service": identity.provider.service_name},
        )
        return HttpResponseRedirect(reverse("dashboard:settings"))
    return HttpResponseRedirect(reverse("dashboard:overview"))


@require_safe
def github_start(request: HttpRequest) -> HttpResponse:
    try:
        auth_services.check_github_enabled()
    except ApiError as failure:
        return _failed(request, failure)
    query = {
        "client_id": options.get_str("GitHubClientId"),
        "state": auth_services.new_oauth_state(request),
        "scope": "user:email",
    }
    return HttpResponseRedirect(
        f"{settings.ONEAPI_GITHUB_URL}/login/oauth/authorize?{urlencode(query)}"
    )


@require_safe
def github_callback(request: HttpRequest) -> HttpResponse:
    try:
        auth_services.check_oauth_state(request)
        auth_services.check_github_enabled()
        identity = oauth.github_identity(request, request.GET.get("code", ""))
        return _finish(request, identity)
    except ApiError as failure:
        return _failed(request, failure)


@require_safe
def lark_start(request: HttpRequest) -> HttpResponse:
    query = {
        "client_id": options.get_str("LarkClientId"),
        "redirect_uri": f"{oauth.server_address()}/oauth/lark",
        "state": auth_services.new_oauth_state(request),
    }
    return HttpResponseRedirect(
        f"{settings.ONEAPI_FEISHU_URL}/open-apis/authen/v1/authorize?{urlencode(query)}"
    )


@require_safe
def lark_callback(request: HttpRequest) -> HttpResponse:
    try:
        auth_services.check_oauth_state(request)
        identity = oauth.lark_identity(request, request.GET.get("code", ""))
        return _finish(request, identity)
    except ApiError as failure:
        return _failed(request, failure)


@require_POST
def wechat_login(request: HttpRequest) -> HttpResponse:
    """The code the WeChat official account replied with, typed into the login page."""
    try:
        security.check_rate(request)
        auth_services.check_wechat_enabled()
        openid = wechat.openid_for_code(request.POST.get("code", "").strip())
        user = auth_services.external_user(oauth.WECHAT, openid)
    except ApiError as failure:
        return _failed(request, failure)
    auth_services.start_session(request, user)
    return access.redirect(request, reverse("dashboard:overview"))
