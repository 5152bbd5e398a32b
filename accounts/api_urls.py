"""`/api/user` routes of One API (`router/api.go`); login, registration and OAuth are in
`accounts.auth_urls`, the dashboard and top-up in `billing.api_urls`."""

from __future__ import annotations

from django.urls import re_path

from accounts import api_views

urlpatterns = [
    # Fixed paths first: they must win over the `<id>` pattern.
    re_path(r"^api/user/self/?$", api_views.SelfView.as_view()),
    re_path(r"^api/user/token/?$", api_views.AccessTokenView.as_view()),
    re_path(r"^api/user/aff/?$", api_views.AffiliateCodeView.as_view()),
    re_path(r"^api/user/available_models/?$", api_views.AvailableModelsView.as_view()),
    re_path(r"^api/user/search/?$", api_views.UserSearchView.as_view()),
    re_path(r"^api/user/manage/?$", api_views.ManageView.as_view()),
    re_path(r"^api/user/?$", api_views.UsersView.as_view()),
    re_path(r"^api/user/(?P<pk>\d+)/?$", api_views.UserDetailView.as_view()),
]
