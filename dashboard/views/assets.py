"""Static files (our CSS and JS, htmx from django-htmx's package) straight from the apps'
`static/` folders: the gateway is one process with no web server in front of it by default,
and there is no collectstatic step to forget."""

from __future__ import annotations

from pathlib import PurePosixPath

from django.contrib.staticfiles.views import serve
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_safe

MAX_AGE = 3600  # an hour: assets change only with a new release


@require_safe
def static(request: HttpRequest, path: str) -> HttpResponse:
    if ".." in PurePosixPath(path).parts:
        raise Http404  # the finders would refuse it too, as a SuspiciousFileOperation (400)
    response = serve(request, path, insecure=True)
    response["Cache-Control"] = f"public, max-age={MAX_AGE}"
    return response
