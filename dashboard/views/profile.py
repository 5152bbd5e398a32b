"""Personal settings: profile and password, system access token, invitation link, bindings
(email, WeChat, GitHub, Feishu) and deleting the account, through `accounts.services` and
`accounts.auth_services` (the functions behind `/api/user/self` and the bind routes)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout, update_session_auth_hash
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts import auth_services, oauth, services, wechat
from accounts.models import User
from dashboard import access, security
from dashboard.feedback import flash
from dashboard.forms import DeleteAccountForm, EmailBindForm, EmailForm, ProfileForm
from dashboard.rendering import render_page, wants_fragment
from dashboard.service_errors import explain
from dashboard.views.auth import sign_in_options
from oneapi.api import ApiError


def profile_form(user: User, data: Any = None) -> ProfileForm:
    return ProfileForm(data, initial={"username": user.username, "display_name": user.display_name})


def _page(request: HttpRequest, **extra: Any) -> HttpResponse:
    user = access.viewer(request)
    context = {
        "user": user,
        "profile_form": extra.pop("profile_form", None) or profile_form(user),
        "email_form": extra.pop("email_form", None) or EmailBindForm(initial={"email": user.email}),
        **sign_in_options(),
        **extra,
    }
    return render_page(request, "console/settings.html", context)


def _section(request: HttpRequest, fragment: str, **context: Any) -> HttpResponse:
    """The changed section alone for HTMX, else the whole page around it."""
    if wants_fragment(request):
        return render_page(request, fragment, {"user": access.viewer(request), **context})
    return _page(request, **context)


@require_safe
@access.login_required
def settings_page(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@access.login_required
def profile(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    form = profile_form(user, request.POST)
    saved = False
    if form.is_valid():
        data = form.cleaned_data
        try:
            updated = services.update_self(
                user.pk,
                username=data["username"],
                display_name=data["display_name"],
                password=data["password"] or None,
            )
        except ApiError as failure:
            form.add_error(None, explain(failure))
        else:
            if data["password"]:
                # Keep this browser signed in; the user's other sessions end.
                update_session_auth_hash(request, updated)
            request.user = updated
            form, saved = profile_form(updated), True
    return _section(
        request, "console/partials/profile_form.html", profile_form=form, profile_saved=saved
    )


@require_POST
@access.login_required
def access_token(request: HttpRequest) -> HttpResponse:
    token = services.regenerate_access_token(access.viewer(request).pk)
    return _section(request, "console/partials/access_token.html", access_token=token)


@require_POST
@access.login_required
def invitation(request: HttpRequest) -> HttpResponse:
    code = services.affiliate_code(access.viewer(request).pk)
    link = f"{oauth.server_address()}{reverse('dashboard:register')}?aff={code}"
    return _section(request, "console/partials/invitation.html", invitation_link=link)


@require_POST
@access.login_required
def email_code(request: HttpRequest) -> HttpResponse:
    form = EmailForm(request.POST)
    sent, error = False, ""
    if form.is_valid():
        try:
            security.check_rate(request)
            auth_services.send_verification_code(form.cleaned_data["email"])
        except ApiError as failure:
            error = explain(failure)
        else:
            sent = True
    else:
        error = _("This email address is not valid.")
    email_form = EmailBindForm(initial={"email": request.POST.get("email", "")})
    return _section(
        request,
        "console/partials/email_bind.html",
        email_form=email_form,
        email_sent=sent,
        email_error=error,
    )


@require_POST
@access.login_required
def email_bind(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    form = EmailBindForm(request.POST)
    bound, error = False, ""
    if form.is_valid():
        try:
            security.check_rate(request)
            auth_services.bind_email(user, form.cleaned_data["email"], form.cleaned_data["code"])
        except ApiError as failure:
            error = explain(failure)
        else:
            bound = True
            form = EmailBindForm(initial={"email": user.email})
    return _section(
        request,
        "console/partials/email_bind.html",
        email_form=form,
        email_bound=bound,
        email_error=error,
    )


@require_POST
@access.login_required
def wechat_bind(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    error = ""
    try:
        security.check_rate(request)
        auth_services.check_wechat_enabled()
        openid = wechat.openid_for_code(request.POST.get("code", "").strip())
        auth_services.bind_external(user, oauth.WECHAT, openid)
    except ApiError as failure:
        error = explain(failure)
    if not error:
        flash(request, "success", _("Your WeChat account is now bound."))
        return access.redirect(request, reverse("dashboard:settings"))
    return _section(
        request, "console/partials/bindings.html", wechat_error=error, **sign_in_options()
    )


@require_http_methods(["GET", "HEAD", "POST"])
@access.login_required
def delete_account(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    form = DeleteAccountForm(
        request.POST if request.method == "POST" else None, username=user.username
    )
    error = ""
    if form.is_valid():
        try:
            services.delete_self(user.pk)
        except ApiError as failure:
            error = explain(failure)
        else:
            logout(request)
            flash(request, "success", _("Your account has been deleted."))
            return access.redirect(request, reverse("dashboard:home"))
    return render_page(request, "console/delete_account.html", {"form": form, "error": error})
