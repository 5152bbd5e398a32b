"""`/metrics`: this process's Prometheus metrics (see relay.metrics), behind a bearer token.

The MetricsToken option turns it on; while empty the endpoint does not exist (404), so a
deployment exposes nothing it did not ask for. Each process answers for itself only: scrape
every node directly.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from oneapi import options
from relay.metrics import REGISTRY

TOKEN_OPTION = "MetricsToken"


def _bearer(request: HttpRequest) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def _authorized(request: HttpRequest, token: str) -> bool:
    # Constant time: the comparison must not tell how much of a guess was right.
    return hmac.compare_digest(_bearer(request).encode(), token.encode())


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    token = options.get_str(TOKEN_OPTION)
    if not token:
        return HttpResponse(b"404 page not found", status=404, content_type="text/plain")
    if not _authorized(request, token):
        response = HttpResponse(b"401 unauthorized", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
