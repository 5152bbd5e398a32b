"""Logs: a user's own; an admin's page shows every user's, with the user and channel
filters (One API's `/log`). `?follow=1` adds new entries live, through the websocket of
`dashboard.consumers.LogFollowConsumer` (with the same filters)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from billing import services as billing
from billing.models import LogType
from dashboard import access, paging
from dashboard.forms import LogFilterForm, to_timestamp
from dashboard.rendering import render_page


def log_filter(form: LogFilterForm) -> billing.LogFilter:
    if not form.is_valid():
        return billing.LogFilter()
    data = form.cleaned_data
    return billing.LogFilter(
        type=data.get("type") or 0,
        start_timestamp=to_timestamp(data["start"]) if data.get("start") else 0,
        end_timestamp=to_timestamp(data["end"]) if data.get("end") else 0,
        model_name=(data.get("model_name") or "").strip(),
        token_name=(data.get("token_name") or "").strip(),
        username=(data.get("username") or "").strip(),
        channel=data.get("channel") or 0,
    )


def follow_query(filters: billing.LogFilter, *, admin: bool) -> str:
    """The filters the live view applies to new entries (time bounds do not apply)."""
    fields = {
        "type": filters.type or "",
        "model_name": filters.model_name,
        "token_name": filters.token_name,
    }
    if admin:
        fields.update(username=filters.username, channel=filters.channel or "")
    return urlencode({name: value for name, value in fields.items() if value})


@require_safe
@access.login_required
def logs(request: HttpRequest) -> HttpResponse:
    user = access.viewer(request)
    admin = user.is_admin
    form = LogFilterForm(request.GET, admin=admin)
    filters = log_filter(form)
    owner = None if admin else user.pk
    pager = paging.pager(request)
    page = pager.page(billing.list_logs(filters, pager.offset, pager.fetch, user_id=owner))
    context = {
        "form": form,
        "page": page,
        "admin": admin,
        "consumed": billing.sum_consumed_quota(filters, user_id=owner),
        "log_types": {choice.value: choice.label for choice in LogType},
        "follow": request.GET.get("follow") == "1",
        "follow_query": follow_query(filters, admin=admin),
    }
    return render_page(
        request, "console/logs.html", context, fragment="console/partials/log_table.html"
    )
