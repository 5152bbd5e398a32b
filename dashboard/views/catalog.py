"""The models the signed-in user's group can call (`accounts.services.available_models`)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from accounts.services import available_models
from dashboard import access
from dashboard.rendering import render_page


@require_safe
@access.login_required
def models(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    query = request.GET.get("q", "").strip()
    names = available_models(user)
    shown = [name for name in names if query.lower() in name.lower()] if query else names
    context = {"models": shown, "total": len(names), "query": query, "group": user.group}
    return render_page(
        request, "console/models.html", context, fragment="console/partials/model_list.html"
    )
