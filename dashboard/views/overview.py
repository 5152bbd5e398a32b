"""The signed-in user's dashboard: balance, usage and charts of the last 7 or 30 days."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from dashboard import access, charts, display
from dashboard.rendering import render_page
from dashboard.usage import RANGES, daily_usage


def _range(request: HttpRequest) -> int:
    try:
        days = int(request.GET.get("days", RANGES[0]))
    except ValueError:
        return RANGES[0]
    return days if days in RANGES else RANGES[0]


def _count(value: float) -> str:
    return f"{value:,.0f}"


@require_safe
@access.login_required
def overview(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    days = _range(request)
    usage = daily_usage(user.pk, days)
    series = charts.series_of(usage)
    chart_list = [
        charts.stacked_bars(
            "requests", _("Requests"), usage, lambda r: r.requests, _count, series, integer=True
        ),
        charts.stacked_bars(
            "tokens", _("Token usage"), usage, lambda r: r.tokens, _count, series, integer=True
        ),
        charts.stacked_bars(
            "cost",
            _("Cost"),
            usage,
            lambda r: r.quota,
            display.quota,
            series,
            axis_label=display.quota_axis,
        ),
    ]
    context = {
        "user": user,
        "days": days,
        "ranges": RANGES,
        "usage": usage,
        "charts": chart_list,
        "models": usage.by_model(),
    }
    return render_page(
        request, "console/overview.html", context, fragment="console/partials/usage.html"
    )
