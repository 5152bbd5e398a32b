"""The pages anyone may open: home and about."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

from dashboard import markup
from dashboard.rendering import render_page
from oneapi import options
from oneapi.status import START_TIME


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """HomePageContent as the home page, or a default one that says how to connect."""
    content = markup.option_content(options.get_str("HomePageContent"))
    return render_page(
        request,
        "public/home.html",
        {
            "content": content,
            # The address clients reach: the ServerAddress option, else the one in the URL bar.
            "base_url": options.get_str("ServerAddress").rstrip("/")
            or request.build_absolute_uri("/").rstrip("/"),
            "start_time": START_TIME,
        },
    )


@require_safe
def about(request: HttpRequest) -> HttpResponse:
    content = markup.option_content(options.get_str("About"))
    return render_page(request, "public/about.html", {"content": content})
