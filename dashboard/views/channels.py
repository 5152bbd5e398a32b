"""Channels (admin): list, search, sort, add (type-aware, batch), edit, priority and weight
inline, enable/disable, delete, delete the disabled ones, balances and tests, through the
functions behind `/api/channel` (`channels_mgmt.services`, `.testing`, `.balance`).
Testing every channel with live results is the websocket of `dashboard.consumers`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from channels_mgmt import balance, services, testing
from channels_mgmt.api_views import search_channels
from channels_mgmt.models import Channel, ChannelStatus
from channels_mgmt.serializers import ChannelUpdateSerializer
from dashboard import access, channel_types, paging
from dashboard.channel_forms import ChannelForm
from dashboard.feedback import flash, toast
from dashboard.rendering import render_fragment, render_page, wants_fragment

# `?order=` values and the columns they sort by (One API lists newest first).
ORDERS = {
    "": ("-id",),
    "priority": ("-priority", "-id"),
    "weight": ("-weight", "-id"),
    "response_time": ("response_time", "-id"),
    "balance": ("-balance", "-id"),
    "used_quota": ("-used_quota", "-id"),
    "name": ("name", "-id"),
    "type": ("type", "-id"),
}
INLINE_FIELDS = ("priority", "weight")


@dataclass(frozen=True)
class ChannelRow:
    """A channel as the table shows it; `test` is a test just run from this page."""

    channel: Channel
    test: testing.TestResult | None = None
    note: str = ""  # a balance update's failure

    @property
    def type_name(self) -> str:
        return channel_types.type_name(self.channel.type)

    @property
    def has_balance(self) -> bool:
        return balance.supports_balance(self.channel.type)

    @property
    def is_enabled(self) -> bool:
        return self.channel.status == ChannelStatus.ENABLED


def channel_row(channel: Channel, **extra: Any) -> ChannelRow:
    return ChannelRow(channel, **extra)


def listed_channels(keyword: str, order: str) -> QuerySet[Channel]:
    rows = search_channels(keyword) if keyword else Channel.objects.all()
    return rows.order_by(*ORDERS.get(order, ORDERS[""]))


def _channel_or_404(channel_id: int) -> Channel:
    channel = Channel.objects.filter(pk=channel_id).first()
    if channel is None:
        raise Http404
    return channel


def _answer_row(
    request: HttpRequest, channel_id: int, level: str, text: str, **extra: Any
) -> HttpResponse:
    """The row for an HTMX request (with a toast), else back to the list with a message."""
    if wants_fragment(request):
        channel = _channel_or_404(channel_id)
        response = render_fragment(
            request, "console/partials/channel_row.html", {"row": channel_row(channel, **extra)}
        )
        return toast(response, level, text)
    flash(request, level, text)
    return access.redirect(request, reverse("dashboard:channels"))


def _table_context(request: HttpRequest) -> dict[str, Any]:
    keyword = request.GET.get("keyword", "").strip()
    order = request.GET.get("order", "")
    order = order if order in ORDERS else ""
    pager = paging.pager(request)
    rows = listed_channels(keyword, order)[pager.offset : pager.offset + pager.fetch]
    page = pager.page(list(rows))
    return {
        "page": page,
        "rows": [channel_row(channel) for channel in page.rows],
        "keyword": keyword,
        "order": order,
        "running": testing.is_running(),
    }


@require_safe
@access.admin_required
def channel_list(request: HttpRequest) -> HttpResponse:
    return render_page(
        request,
        "console/channels.html",
        _table_context(request),
        fragment="console/partials/channel_table.html",
    )


# --- add and edit --------------------------------------------------------------------------


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def channel_add(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = ChannelForm(request.POST)
        if form.is_valid():
            created = services.create_channels(form.changes)
            text = (
                _("Channel created.")
                if len(created) == 1
                else _("%(count)d channels created.") % {"count": len(created)}
            )
            flash(request, "success", text)
            return access.redirect(request, reverse("dashboard:channels"))
    else:
        form = ChannelForm(initial={"groups": ["default"], "weight": 1, "priority": 0})
    return render_page(request, "console/channel_form.html", {"form": form, "channel": None})


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def channel_edit(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = _channel_or_404(channel_id)
    if request.method == "POST":
        form = ChannelForm(request.POST, channel=channel)
        if form.is_valid():
            try:
                services.update_channel(channel.pk, form.changes)
            except Channel.DoesNotExist:
                raise Http404 from None
            flash(request, "success", _("Channel saved."))
            return access.redirect(request, reverse("dashboard:channels"))
    else:
        form = ChannelForm.for_channel(channel)
    return render_page(request, "console/channel_form.html", {"form": form, "channel": channel})


@require_safe
@access.admin_required
def channel_type_fields(request: HttpRequest) -> HttpResponse:
    """The form's type-dependent part (key, base URL, config, models) for `?type=`; the
    other values the form holds come along and are kept."""
    channel = None
    channel_id = request.GET.get("channel", "")
    if channel_id.isdigit():
        channel = _channel_or_404(int(channel_id))
    initial = {name: request.GET.get(name, "") for name in ("name", "base_url")}
    initial.update(
        models=request.GET.getlist("models"), groups=request.GET.getlist("groups") or ["default"]
    )
    form = ChannelForm(initial=initial, channel=channel, channel_type=_int(request.GET, "type"))
    return render_fragment(
        request, "console/partials/channel_type_fields.html", {"form": form, "channel": channel}
    )


def _int(data: Any, name: str) -> int | None:
    value = str(data.get(name, "")).strip()
    return int(value) if value.lstrip("-").isdigit() else None


# --- row actions ---------------------------------------------------------------------------


@require_POST
@access.admin_required
def channel_field(request: HttpRequest, channel_id: int) -> HttpResponse:
    """Inline edit of priority or weight, validated as `PUT /api/channel` validates them."""
    _channel_or_404(channel_id)
    changes = {name: request.POST[name] for name in INLINE_FIELDS if name in request.POST}
    serializer = ChannelUpdateSerializer(data={"id": channel_id, **changes})
    if not changes or not serializer.is_valid():
        errors = serializer.errors if changes else {}
        text = "; ".join(f"{name}: {' '.join(map(str, errs))}" for name, errs in errors.items())
        return _answer_row(request, channel_id, "error", text or _("Nothing to change."))
    services.update_channel(channel_id, serializer.changes())
    return _answer_row(request, channel_id, "success", _("Channel saved."))


@require_POST
@access.admin_required
def channel_status(request: HttpRequest, channel_id: int) -> HttpResponse:
    _channel_or_404(channel_id)
    enable = request.POST.get("status") == str(ChannelStatus.ENABLED)
    wanted = ChannelStatus.ENABLED if enable else ChannelStatus.MANUALLY_DISABLED
    services.set_channel_status(channel_id, wanted)
    text = _("Channel enabled.") if enable else _("Channel disabled.")
    return _answer_row(request, channel_id, "success", text)


@require_POST
@access.admin_required
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    """Test one channel (as `GET /api/channel/test/:id`); the row shows the result."""
    _channel_or_404(channel_id)
    try:
        result = testing.test_channel(channel_id, request.POST.get("model") or None)
    except Channel.DoesNotExist:
        raise Http404 from None
    if result.success:
        level = "success"
        text = _("Test passed in %(seconds).2f s.") % {"seconds": result.seconds}
    else:
        level, text = "error", _("Test failed: %(message)s") % {"message": result.message}
    return _answer_row(request, channel_id, level, text, test=result)


@require_POST
@access.admin_required
def channel_balance(request: HttpRequest, channel_id: int) -> HttpResponse:
    _channel_or_404(channel_id)
    try:
        amount = balance.update_balance(channel_id)
    except Channel.DoesNotExist:
        raise Http404 from None
    except balance.BalanceError as error:
        message = _("Balance not updated: %(error)s") % {"error": error}
        return _answer_row(request, channel_id, "error", message, note=message)
    return _answer_row(
        request, channel_id, "success", _("Balance: $%(amount).2f") % {"amount": amount}
    )


@require_POST
@access.admin_required
def channel_balances(request: HttpRequest) -> HttpResponse:
    """Every balance now (as the beat job does); the table comes back with them."""
    summary = balance.update_all_balances()
    text = _("Balances updated: %(updated)d, failed: %(failed)d.") % {
        "updated": summary.updated,
        "failed": summary.failed,
    }
    if wants_fragment(request):
        response = render_fragment(
            request, "console/partials/channel_table.html", _table_context(request)
        )
        return toast(response, "success" if not summary.failed else "info", text)
    flash(request, "success", text)
    return access.redirect(request, reverse("dashboard:channels"))


@require_POST
@access.admin_required
def channel_test_all(request: HttpRequest) -> HttpResponse:
    """HTMX: the status box that opens the websocket running the tests with live results
    (`dashboard.consumers`). Without JavaScript the run goes to a worker, as `/api` does it."""
    scope = request.POST.get("scope", "all")
    if scope not in testing.SCOPES:
        scope = "all"
    if wants_fragment(request):
        return render_fragment(
            request,
            "console/partials/channel_test_run.html",
            {"state": "busy" if testing.is_running() else "connect", "scope": scope},
        )
    if testing.is_running():
        flash(request, "error", _("A test of all channels is already running."))
    else:
        from channels_mgmt.tasks import test_all_channels_task  # loads Celery on first use

        try:
            test_all_channels_task.delay(scope)
        except Exception:
            flash(request, "error", _("The background worker cannot be reached."))
        else:
            flash(request, "success", _("Testing all channels; results show here when done."))
    return access.redirect(request, reverse("dashboard:channels"))


def _confirm(request: HttpRequest, question: str, action: str) -> HttpResponse:
    return render_page(
        request,
        "confirm.html",
        {
            "question": question,
            "action": action,
            "cancel": reverse("dashboard:channels"),
            "confirm_label": _("Delete"),
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    """GET: a confirmation page (the no-JavaScript path); POST: delete."""
    channel = _channel_or_404(channel_id)
    if request.method != "POST":
        question = _("Delete the channel “%(name)s”? Requests stop going to it.") % {
            "name": channel.name or f"#{channel.pk}"
        }
        return _confirm(request, question, reverse("dashboard:channel-delete", args=[channel.pk]))
    services.delete_channel(channel.pk)
    text = _("Channel deleted.")
    if wants_fragment(request):
        return toast(HttpResponse(""), "success", text)  # the row is swapped for nothing
    flash(request, "success", text)
    return access.redirect(request, reverse("dashboard:channels"))


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def channels_delete_disabled(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        question = _("Delete every disabled channel (manually or automatically disabled)?")
        return _confirm(request, question, reverse("dashboard:channels-delete-disabled"))
    count = services.delete_disabled_channels()
    text = ngettext(
        "%(count)d disabled channel deleted.", "%(count)d disabled channels deleted.", count
    ) % {"count": count}
    if wants_fragment(request):
        response = render_fragment(
            request, "console/partials/channel_table.html", _table_context(request)
        )
        return toast(response, "success", text)
    flash(request, "success", text)
    return access.redirect(request, reverse("dashboard:channels"))
