"""API keys: list, search, create, edit, enable/disable and delete the caller's own keys,
through `billing.services` (the functions behind `/api/token`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts.services import available_models
from billing import services as billing
from billing.models import ApiKey, KeyStatus
from dashboard import access, display, paging
from dashboard.feedback import flash, toast
from dashboard.forms import TokenForm
from dashboard.rendering import render_fragment, render_page, wants_fragment
from dashboard.service_errors import explain
from oneapi.api import ApiError

NEW_KEY_SESSION = "dashboard:new_key"  # the key just created, shown once on the list


@dataclass(frozen=True)
class KeyRow:
    """A key as the table shows it, with its effective state."""

    key: ApiKey
    state: str  # enabled, disabled, expired, exhausted

    @property
    def secret(self) -> str:
        return f"sk-{self.key.key}"

    @property
    def masked(self) -> str:
        return f"sk-{self.key.key[:4]}…{self.key.key[-4:]}"


def key_row(key: ApiKey, now: int | None = None) -> KeyRow:
    now = int(time.time()) if now is None else now
    if key.status != KeyStatus.ENABLED:
        state = KeyStatus(key.status).label if key.status in KeyStatus.values else "disabled"
    elif key.expired_time != -1 and key.expired_time <= now:
        state = "expired"
    elif not key.unlimited_quota and key.remain_quota <= 0:
        state = "exhausted"
    else:
        state = "enabled"
    return KeyRow(key, state)


def _key_or_404(request: HttpRequest, token_id: int) -> ApiKey:
    try:
        return billing.get_token(access.viewer(request).pk, token_id)
    except ApiError:
        raise Http404 from None


@require_safe
@access.login_required
def token_list(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    keyword = request.GET.get("keyword", "").strip()
    order = request.GET.get("order", "")
    order = order if order in billing.TOKEN_ORDERS else ""
    pager = paging.pager(request)
    if keyword:
        page = pager.slice(billing.search_tokens(user.pk, keyword))
    else:
        page = pager.page(billing.list_tokens(user.pk, pager.offset, pager.fetch, order))
    now = int(time.time())
    new_key = None
    new_key_id = request.session.pop(NEW_KEY_SESSION, None)
    if new_key_id is not None:
        found = ApiKey.objects.filter(pk=new_key_id, user_id=user.pk).first()
        new_key = key_row(found, now) if found else None
    context = {
        "page": page,
        "rows": [key_row(key, now) for key in page.rows],
        "keyword": keyword,
        "order": order,
        "new_key": new_key,
    }
    return render_page(
        request, "console/tokens.html", context, fragment="console/partials/token_table.html"
    )


def _models(request: HttpRequest) -> list[str]:
    return available_models(access.viewer(request))


@require_http_methods(["GET", "HEAD", "POST"])
@access.login_required
def token_add(request: HttpRequest) -> HttpResponse:
    initial = {"remain_quota": int(display.quota_per_unit())}
    form = TokenForm(
        request.POST if request.method == "POST" else None, initial=initial, models=_models(request)
    )
    if form.is_valid():
        key = billing.create_token(access.viewer(request).pk, form.service_fields())
        request.session[NEW_KEY_SESSION] = key.pk
        flash(request, "success", _("API key created."))
        return access.redirect(request, reverse("dashboard:tokens"))
    return render_page(request, "console/token_form.html", {"form": form, "key": None})


@require_http_methods(["GET", "HEAD", "POST"])
@access.login_required
def token_edit(request: HttpRequest, token_id: int) -> HttpResponse:
    key = _key_or_404(request, token_id)
    if request.method == "POST":
        form = TokenForm(
            request.POST, models=sorted({*_models(request), *key.models.split(",")} - {""})
        )
        if form.is_valid():
            try:
                billing.update_token(
                    key.user_id, {"id": key.pk, **form.service_fields()}, status_only=False
                )
            except ApiError as failure:
                form.add_error(None, explain(failure))
            else:
                flash(request, "success", _("API key saved."))
                return access.redirect(request, reverse("dashboard:tokens"))
    else:
        form = TokenForm.for_key(key, _models(request))
    return render_page(request, "console/token_form.html", {"form": form, "key": key_row(key)})


@require_POST
@access.login_required
def token_status(request: HttpRequest, token_id: int) -> HttpResponse:
    """Enable or disable a key; an HTMX request gets its table row back."""
    key = _key_or_404(request, token_id)
    wanted = KeyStatus.ENABLED if request.POST.get("status") == "1" else KeyStatus.DISABLED
    try:
        key = billing.update_token(key.user_id, {"id": key.pk, "status": wanted}, status_only=True)
        level, text = (
            "success",
            _("API key enabled.") if wanted == KeyStatus.ENABLED else _("API key disabled."),
        )
    except ApiError as failure:
        level, text = "error", explain(failure)
    if wants_fragment(request):
        response = render_fragment(
            request, "console/partials/token_row.html", {"row": key_row(key)}
        )
        return toast(response, level, text)
    flash(request, level, text)
    return access.redirect(request, reverse("dashboard:tokens"))


@require_http_methods(["GET", "HEAD", "POST"])
@access.login_required
def token_delete(request: HttpRequest, token_id: int) -> HttpResponse:
    """GET: a confirmation page (the no-JavaScript path); POST: delete."""
    key = _key_or_404(request, token_id)
    if request.method != "POST":
        return render_page(
            request,
            "confirm.html",
            {
                "question": _("Delete the API key “%(name)s”? Clients using it stop working.")
                % {"name": key.name or key_row(key).masked},
                "action": reverse("dashboard:token-delete", args=[key.pk]),
                "cancel": reverse("dashboard:tokens"),
                "confirm_label": _("Delete"),
            },
        )
    billing.delete_token(key.user_id, key.pk)
    text = _("API key deleted.")
    if wants_fragment(request):
        return toast(HttpResponse(""), "success", text)  # the row is swapped for nothing
    flash(request, "success", text)
    return access.redirect(request, reverse("dashboard:tokens"))
