"""System settings (root): the options of `/api/option` in sections and groups, each group
saved on its own with the same validation (`dashboard.option_settings`)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from dashboard import access, option_settings
from dashboard.admin_errors import explain_option
from dashboard.feedback import flash, toast
from dashboard.rendering import render_fragment, render_page, wants_fragment

GROUP_FRAGMENT = "admin/partials/option_group.html"


def _group_context(
    section: option_settings.Section,
    grp: option_settings.Group,
    states: list[option_settings.FieldState],
    saved: bool = False,
) -> dict[str, object]:
    return {
        "section": section,
        "group": grp,
        "states": states,
        "saved": saved,
        "themes": option_settings.theme_choices(),
    }


@require_http_methods(["GET", "HEAD", "POST"])
@access.root_required
def system_settings(request: HttpRequest, section: str = "system") -> HttpResponse:
    current = option_settings.section(section)
    if current is None:
        raise Http404
    groups = {g.slug: option_settings.field_states(g) for g in current.groups}
    status = 200
    posted = None
    if request.method == "POST":
        grp = option_settings.group(section, request.POST.get("group", ""))
        if grp is None:
            raise Http404
        values = option_settings.submitted_values(grp, request.POST)
        try:
            option_settings.save_options(option_settings.changes(grp, values))
        except option_settings.OptionError as failure:
            message = explain_option(failure.key, failure.error)
            groups[grp.slug] = option_settings.field_states(grp, values, {failure.key: message})
            status = 422
            if wants_fragment(request):
                context = _group_context(current, grp, groups[grp.slug])
                response = render_page(request, GROUP_FRAGMENT, context, status=status)
                return toast(response, "error", message)
        else:
            text = _("Settings saved.")
            if wants_fragment(request):
                states = option_settings.field_states(grp)
                context = _group_context(current, grp, states, saved=True)
                return toast(render_fragment(request, GROUP_FRAGMENT, context), "success", text)
            flash(request, "success", text)
            return access.redirect(request, request.path)
        posted = grp.slug
    context = {
        "sections": option_settings.SECTIONS,
        "section": current,
        "groups": [(g, groups[g.slug]) for g in current.groups],
        "posted": posted,
        "themes": option_settings.theme_choices(),
    }
    return render_page(request, "admin/system_settings.html", context, status=status)


@require_POST
@access.root_required
def system_settings_preview(request: HttpRequest) -> HttpResponse:
    """The posted text of a page option, rendered as the site would show it."""
    key = request.POST.get("key", "")
    if key not in option_settings.PREVIEWED:
        raise Http404
    content = option_settings.preview(key, request.POST.get(key, ""))
    return render_fragment(
        request, "admin/partials/option_preview.html", {"content": content, "key": key}
    )
