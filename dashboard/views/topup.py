"""Top-up: redeem a code (`billing.services.redeem`), or follow the TopUpLink option."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from billing import services as billing
from dashboard import access, display
from dashboard.forms import RedeemForm
from dashboard.rendering import render_page
from dashboard.service_errors import explain
from oneapi.api import ApiError


@require_http_methods(["GET", "HEAD", "POST"])
@access.login_required
def topup(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    form = RedeemForm(request.POST if request.method == "POST" else None)
    error = success = ""
    if form.is_valid():
        try:
            added = billing.redeem(user, form.cleaned_data["key"])
        except ApiError as failure:
            error = explain(failure)
        else:
            user.refresh_from_db(fields=["quota"])
            success = _("Redeemed: %(amount)s added to your balance.") % {
                "amount": display.quota(added)
            }
            form = RedeemForm()
    context = {"form": form, "error": error, "success": success, "balance": user.quota}
    return render_page(
        request, "console/topup.html", context, fragment="console/partials/redeem.html"
    )
