"""Redemption codes (admin): list, search, generate a batch (shown once, to copy or export
as CSV), enable/disable and delete, through `billing.services` (behind `/api/redemption`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from urllib.parse import quote

from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from billing import services as billing
from billing.models import Redemption, RedemptionStatus
from dashboard import access, paging
from dashboard.admin_errors import explain
from dashboard.admin_forms import RedemptionCreateForm
from dashboard.feedback import flash, toast
from dashboard.rendering import render_fragment, render_page, wants_fragment
from oneapi.api import ApiError

NEW_CODES_SESSION = "dashboard:new_codes"  # the batch just generated, shown once on the list


@dataclass(frozen=True)
class NewBatch:
    name: str
    quota: int
    codes: list[str]

    @property
    def all_codes(self) -> str:
        """What "copy all" puts on the clipboard: one code a line."""
        return "\n".join(self.codes)


def _code_or_404(redemption_id: int) -> Redemption:
    try:
        return billing.get_redemption(redemption_id)
    except ApiError:
        raise Http404 from None


@require_safe
@access.admin_required
def redemptions(request: HttpRequest) -> HttpResponse:
    keyword = request.GET.get("keyword", "").strip()
    pager = paging.pager(request)
    if keyword:
        page = pager.slice(billing.search_redemptions(keyword))
    else:
        page = pager.page(billing.list_redemptions(pager.offset, pager.fetch))
    stored = request.session.pop(NEW_CODES_SESSION, None)
    context = {
        "page": page,
        "rows": page.rows,
        "keyword": keyword,
        "new_batch": NewBatch(**stored) if stored else None,
    }
    return render_page(
        request,
        "admin/redemptions.html",
        context,
        fragment="admin/partials/redemption_table.html",
    )


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def redemption_add(request: HttpRequest) -> HttpResponse:
    form = RedemptionCreateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        data = form.cleaned_data
        codes = billing.create_redemptions(
            access.viewer(request).pk, data["name"], data["quota"], data["count"]
        )
        request.session[NEW_CODES_SESSION] = {
            "name": data["name"],
            "quota": data["quota"],
            "codes": codes,
        }
        text = ngettext("%(count)d code generated.", "%(count)d codes generated.", len(codes))
        flash(request, "success", text % {"count": len(codes)})
        return access.redirect(request, reverse("dashboard:redemptions"))
    return render_page(request, "admin/redemption_form.html", {"form": form})


@require_safe
@access.admin_required
def redemption_export(request: HttpRequest) -> HttpResponse:
    """The codes named `?name=` as CSV (what `/api/redemption/export` answers)."""
    name = request.GET.get("name", "")
    try:
        body = billing.export_redemptions(name) if name else None
    except ApiError:
        body = None
    if body is None:
        raise Http404
    response = HttpResponse(body, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f"attachment; filename=\"redemptions.csv\"; filename*=UTF-8''{quote(name, safe='')}.csv"
    )
    return response


@require_POST
@access.admin_required
def redemption_status(request: HttpRequest, redemption_id: int) -> HttpResponse:
    """Enable or disable an unused code; an HTMX request gets its table row back."""
    code = _code_or_404(redemption_id)
    wanted = (
        RedemptionStatus.ENABLED if request.POST.get("status") == "1" else RedemptionStatus.DISABLED
    )
    try:
        code = billing.set_redemption_status(code.pk, wanted)
        level, text = (
            "success",
            _("Code enabled.") if wanted == RedemptionStatus.ENABLED else _("Code disabled."),
        )
    except ApiError as failure:
        level, text = "error", explain(failure)
        code = _code_or_404(redemption_id)
    if wants_fragment(request):
        response = render_fragment(request, "admin/partials/redemption_row.html", {"code": code})
        return toast(response, level, text)
    flash(request, level, text)
    return access.redirect(request, reverse("dashboard:redemptions"))


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def redemption_delete(request: HttpRequest, redemption_id: int) -> HttpResponse:
    """GET: a confirmation page (the no-JavaScript path); POST: delete."""
    code = _code_or_404(redemption_id)
    if request.method != "POST":
        return render_page(
            request,
            "confirm.html",
            {
                "question": _("Delete the redemption code “%(name)s” (#%(id)s)?")
                % {"name": code.name, "id": code.pk},
                "action": reverse("dashboard:redemption-delete", args=[code.pk]),
                "cancel": reverse("dashboard:redemptions"),
                "confirm_label": _("Delete"),
            },
        )
    with contextlib.suppress(ApiError):  # deleted meanwhile: the outcome asked for
        billing.delete_redemption(code.pk)
    text = _("Code deleted.")
    if wants_fragment(request):
        return toast(HttpResponse(""), "success", text)  # the row is swapped for nothing
    flash(request, "success", text)
    return access.redirect(request, reverse("dashboard:redemptions"))
