from __future__ import annotations

from django.urls import include, path, re_path

from oneapi import api_views, metrics_view, views

urlpatterns = [
    path("api/status", views.status, name="status"),
    # Prometheus scrapes; off (404) until the MetricsToken option is set.
    path("metrics", metrics_view.metrics, name="metrics"),
    path("", include("oneapi.api_urls")),
    path("", include("accounts.api_urls")),
    path("", include("accounts.auth_urls")),
    path("", include("billing.api_urls")),
    path("", include("channels_mgmt.api_urls")),
    # The web console's pages (none under /api, none a relay path).
    path("", include("dashboard.urls")),
    # Anything else under /api answers One API's 404 body; keep this last.
    re_path(r"^api(?:/(?P<rest>.*))?$", api_views.api_not_found),
]
