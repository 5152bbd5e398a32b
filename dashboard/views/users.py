"""Users (admin): list, search, sort, add, edit, and enable/disable/promote/demote/delete,
through `accounts.services` (the functions behind `/api/user`), whose rules decide who may
act on whom; their refusals are shown, never second-guessed here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import update_session_auth_hash
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_http_methods, require_safe

from accounts import services as accounts
from accounts.models import Role, User, UserStatus
from dashboard import access, paging
from dashboard.admin_errors import explain
from dashboard.admin_forms import UserCreateForm, UserEditForm
from dashboard.feedback import flash, toast
from dashboard.rendering import render_fragment, render_page, wants_fragment
from oneapi import options
from oneapi.api import ApiError

ROLE_LABELS: dict[int, Promise] = {
    Role.COMMON: gettext_lazy("Common user"),
    Role.ADMIN: gettext_lazy("Admin"),
    Role.ROOT: gettext_lazy("Root"),
}
STATUS_LABELS: dict[int, Promise] = {
    UserStatus.ENABLED: pgettext_lazy("state", "Enabled"),
    UserStatus.DISABLED: pgettext_lazy("state", "Disabled"),
    UserStatus.DELETED: pgettext_lazy("state", "Deleted"),
}
ACTIONS = ("enable", "disable", "promote", "demote", "delete")
ORDERS = tuple(accounts.LIST_ORDERS)


@dataclass(frozen=True)
class UserRow:
    """A user as the table shows it (`accounts.services.public_user`), with what the viewer
    may do; the services check again on every action."""

    user: dict[str, Any]
    manageable: bool

    @property
    def pk(self) -> int:
        return int(self.user["id"])

    @property
    def role_label(self) -> str:
        return str(ROLE_LABELS.get(self.user["role"], self.user["role"]))

    @property
    def status_label(self) -> str:
        return str(STATUS_LABELS.get(self.user["status"], self.user["status"]))

    @property
    def is_enabled(self) -> bool:
        return self.user["status"] == UserStatus.ENABLED

    @property
    def is_deleted(self) -> bool:
        return self.user["status"] == UserStatus.DELETED

    @property
    def is_admin(self) -> bool:
        return self.user["role"] >= Role.ADMIN

    @property
    def is_root(self) -> bool:
        """Root can be edited, never disabled, demoted or deleted (the services refuse)."""
        return self.user["role"] >= Role.ROOT


def user_row(viewer: User, user: dict[str, Any]) -> UserRow:
    manageable = viewer.role > user["role"] or viewer.role == Role.ROOT
    return UserRow(user, manageable and user["status"] != UserStatus.DELETED)


def _groups() -> list[str]:
    return sorted(options.get_json("GroupRatio") or {"default": 1})


def _user_or_404(viewer: User, user_id: int) -> dict[str, Any]:
    """The user as the services show it to `viewer` (peers and seniors are refused there)."""
    if user_id > accounts.MAX_ID:
        raise Http404
    try:
        return accounts.get_user(viewer, user_id)
    except ApiError as failure:
        if failure.message == accounts.USER_NOT_FOUND:
            raise Http404 from None
        raise


@require_safe
@access.admin_required
def users(request: HttpRequest) -> HttpResponse:
    viewer = access.viewer(request)
    keyword = request.GET.get("keyword", "").strip()
    order = request.GET.get("order", "")
    order = order if order in ORDERS else ""
    pager = paging.pager(request)
    if keyword:
        page = pager.slice(accounts.search_users(keyword))
    else:
        page = pager.page(accounts.list_users(pager.offset, pager.fetch, order))
    context = {
        "page": page,
        "rows": [user_row(viewer, user) for user in page.rows],
        "keyword": keyword,
        "order": order,
    }
    return render_page(
        request, "admin/users.html", context, fragment="admin/partials/user_table.html"
    )


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def user_add(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        data = form.cleaned_data
        try:
            accounts.create_user(
                access.viewer(request),
                username=data["username"],
                password=data["password"],
                display_name=data["display_name"],
            )
        except ApiError as failure:
            form.add_error(None, explain(failure))
        else:
            flash(request, "success", _("User %(name)s created.") % {"name": data["username"]})
            return access.redirect(request, reverse("dashboard:users"))
    return render_page(request, "admin/user_form.html", {"form": form, "edited": None})


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def user_edit(request: HttpRequest, user_id: int) -> HttpResponse:
    viewer = access.viewer(request)
    try:
        user = _user_or_404(viewer, user_id)
    except ApiError as failure:
        return _refused(request, explain(failure))
    if request.method == "POST":
        form = UserEditForm(request.POST, groups=sorted({*_groups(), user["group"]}))
        if form.is_valid():
            fields = form.service_fields()
            try:
                edited = accounts.update_user(viewer, user_id, **fields)
            except ApiError as failure:
                form.add_error(None, explain(failure))
            else:
                if edited.pk == viewer.pk and fields["password"]:
                    update_session_auth_hash(request, edited)  # root editing itself stays in
                flash(request, "success", _("User %(name)s saved.") % {"name": edited.username})
                return access.redirect(request, reverse("dashboard:users"))
    else:
        form = UserEditForm.for_user(user, _groups())
    return render_page(request, "admin/user_form.html", {"form": form, "edited": user})


def _refused(request: HttpRequest, text: str) -> HttpResponse:
    if wants_fragment(request):
        return toast(HttpResponse(status=204), "error", text)
    flash(request, "error", text)
    return access.redirect(request, reverse("dashboard:users"))


DONE: dict[str, Promise] = {
    "enable": gettext_lazy("User %(name)s enabled."),
    "disable": gettext_lazy("User %(name)s disabled."),
    "promote": gettext_lazy("User %(name)s is now an admin."),
    "demote": gettext_lazy("User %(name)s is now a common user."),
    "delete": gettext_lazy("User %(name)s deleted."),
}
QUESTIONS: dict[str, Promise] = {
    "enable": gettext_lazy("Enable the user “%(name)s”?"),
    "disable": gettext_lazy("Disable the user “%(name)s”? Their API keys stop working."),
    "promote": gettext_lazy("Make “%(name)s” an admin?"),
    "demote": gettext_lazy("Make “%(name)s” a common user?"),
    "delete": gettext_lazy("Delete the user “%(name)s”? This cannot be undone."),
}
CONFIRM_LABELS: dict[str, Promise] = {
    "enable": gettext_lazy("Enable"),
    "disable": gettext_lazy("Disable"),
    "promote": gettext_lazy("Make admin"),
    "demote": gettext_lazy("Make common user"),
    "delete": gettext_lazy("Delete"),
}


@require_http_methods(["GET", "HEAD", "POST"])
@access.admin_required
def user_manage(request: HttpRequest, user_id: str, action: str) -> HttpResponse:
    """GET: a confirmation page (the no-JavaScript path); POST: the action. An HTMX request
    gets the user's row back (nothing, once deleted) and a toast."""
    viewer = access.viewer(request)
    if action not in ACTIONS:
        raise Http404
    user_id = int(user_id)  # the URL pattern allows digits only
    try:
        user = _user_or_404(viewer, user_id)
    except ApiError as failure:
        return _refused(request, explain(failure))
    name = user["username"]
    if request.method != "POST":
        return render_page(
            request,
            "confirm.html",
            {
                "question": QUESTIONS[action] % {"name": name},
                "action": reverse("dashboard:user-manage", args=[user_id, action]),
                "cancel": reverse("dashboard:users"),
                "confirm_label": CONFIRM_LABELS[action],
            },
        )
    try:
        accounts.manage_user(viewer, name, action)
        level, text = "success", str(DONE[action] % {"name": name})
    except ApiError as failure:
        level, text = "error", explain(failure)
    if not wants_fragment(request):
        flash(request, level, text)
        return access.redirect(request, reverse("dashboard:users"))
    if level == "success" and action == "delete":
        return toast(HttpResponse(""), level, text)  # the row is swapped for nothing
    current = accounts.get_user(viewer, user_id)
    response = render_fragment(
        request, "admin/partials/user_row.html", {"row": user_row(viewer, current)}
    )
    return toast(response, level, text)
