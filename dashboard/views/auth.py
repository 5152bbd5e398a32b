"""Sign-in, sign-out, registration and password reset, on the rules of `accounts.auth_services`
(the same functions `/api/user/login`, `/api/user/register` ... call)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts import auth_services
from accounts.bootstrap import ROOT_DEFAULT_PASSWORD
from accounts.models import Role, User
from dashboard import access, security
from dashboard.forms import EmailForm, LoginForm, RegisterForm
from dashboard.rendering import render_page, wants_fragment
from dashboard.service_errors import explain
from oneapi import options
from oneapi.api import ApiError


def sign_in_options() -> dict[str, Any]:
    """Which ways of signing in the login and register pages offer."""
    snapshot = options.snapshot()
    return {
        "password_login": snapshot.get_bool("PasswordLoginEnabled"),
        "register_open": snapshot.get_bool("RegisterEnabled"),
        "github": snapshot.get_bool("GitHubOAuthEnabled")
        and bool(snapshot.get_str("GitHubClientId")),
        "lark": bool(snapshot.get_str("LarkClientId")),
        "wechat": snapshot.get_bool("WeChatAuthEnabled"),
        "wechat_qrcode": snapshot.get_str("WeChatAccountQRCodeImageURL"),
        "turnstile_site_key": (
            snapshot.get_str("TurnstileSiteKey")
            if snapshot.get_bool("TurnstileCheckEnabled")
            else ""
        ),
        "email_verification": snapshot.get_bool("EmailVerificationEnabled"),
    }


def signed_in(request: HttpRequest, user: User) -> HttpResponse:
    """Start the session and go on; root still on the default password is sent to change it."""
    auth_services.start_session(request, user)
    if user.role == Role.ROOT and user.check_password(ROOT_DEFAULT_PASSWORD):
        messages.warning(request, _("You are using the default root password: change it now."))
        return access.redirect(request, reverse("dashboard:settings"))
    return access.redirect(request, access.safe_next(request, reverse("dashboard:overview")))


@require_http_methods(["GET", "HEAD", "POST"])
def login(request: HttpRequest) -> HttpResponse:
    if access.viewer(request) is not None:
        return access.redirect(request, access.safe_next(request, reverse("dashboard:overview")))
    form = LoginForm(request.POST if request.method == "POST" else None)
    error = ""
    if form.is_valid():
        try:
            security.check_rate(request)
            user = auth_services.authenticate_password(
                form.cleaned_data["username"].strip(), form.cleaned_data["password"]
            )
        except ApiError as failure:
            error = explain(failure)
        else:
            return signed_in(request, user)
    context = {
        "form": form,
        "error": error,
        "next": access.safe_next(request, ""),
        **sign_in_options(),
    }
    return render_page(request, "auth/login.html", context)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return access.redirect(request, reverse("dashboard:home"))


def _registration_closed() -> str:
    try:
        auth_services.check_registration_open()
    except ApiError as failure:
        return explain(failure)
    return ""


@require_http_methods(["GET", "HEAD", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    closed = _registration_closed()
    initial = {"aff_code": request.GET.get("aff", "")}
    form = RegisterForm(request.POST if request.method == "POST" else None, initial=initial)
    error = ""
    if not closed and form.is_valid():
        data = form.cleaned_data
        try:
            security.check_rate(request)
            security.check_turnstile(request)
            auth_services.register(
                data["username"],
                data["password"],
                email=data["email"],
                code=data["verification_code"],
                aff_code=data["aff_code"],
            )
        except ApiError as failure:
            error = explain(failure)
        else:
            messages.success(request, _("Your account is ready: sign in."))
            return access.redirect(request, reverse("dashboard:login"))
    context = {"form": form, "error": error, "closed": closed, **sign_in_options()}
    return render_page(request, "auth/register.html", context)


@require_POST
def register_code(request: HttpRequest) -> HttpResponse:
    """Mail a verification code; the register page's "send code" button."""
    form = EmailForm(request.POST)
    sent, error = False, ""
    if form.is_valid():
        try:
            security.check_rate(request)
            security.check_turnstile(request)
            auth_services.send_verification_code(form.cleaned_data["email"])
        except ApiError as failure:
            error = explain(failure)
        else:
            sent = True
    else:
        error = _("This email address is not valid.")
    status = {"sent": sent, "code_error": error}
    if wants_fragment(request):
        return render_page(request, "auth/partials/code_status.html", status)
    # Without JavaScript the whole register form was posted here: show it again, filled in.
    register_form = RegisterForm(
        initial={k: v for k, v in request.POST.items() if "password" not in k}
    )
    context = {
        "form": register_form,
        "closed": _registration_closed(),
        **status,
        **sign_in_options(),
    }
    return render_page(request, "auth/register.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def reset_request(request: HttpRequest) -> HttpResponse:
    """Mail a password reset link (`{ServerAddress}/user/reset?email=&token=`)."""
    form = EmailForm(request.POST if request.method == "POST" else None)
    error, sent = "", False
    if form.is_valid():
        try:
            security.check_rate(request)
            security.check_turnstile(request)
            auth_services.send_password_reset(form.cleaned_data["email"])
        except ApiError as failure:
            error = explain(failure)
        else:
            sent = True
    context = {"form": form, "error": error, "sent": sent, **sign_in_options()}
    return render_page(request, "auth/reset_request.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def reset_confirm(request: HttpRequest) -> HttpResponse:
    """The link of the reset mail. Opening it changes nothing (mail scanners open links);
    the button posts it, and the new random password is shown once."""
    source = request.POST if request.method == "POST" else request.GET
    email, token = source.get("email", ""), source.get("token", "")
    password, error = "", ""
    if request.method == "POST":
        try:
            security.check_rate(request)
            password = auth_services.reset_password(email, token)
        except ApiError as failure:
            error = explain(failure)
    context = {"email": email, "token": token, "password": password, "error": error}
    return render_page(request, "auth/reset_confirm.html", context)
