"""`/api` routes of API keys, logs, redemption codes, top-ups and the user dashboard.

Fixed paths (`search`, `export`, `stat`) come before the `<id>` patterns.
"""

from __future__ import annotations

from django.urls import re_path

from billing import api_views as views

urlpatterns = [
    re_path(r"^api/token/?$", views.TokenCollectionView.as_view()),
    re_path(r"^api/token/search/?$", views.TokenSearchView.as_view()),
    re_path(r"^api/token/(?P<pk>\d{1,18})/?$", views.TokenItemView.as_view()),
    re_path(r"^api/log/?$", views.LogView.as_view()),
    re_path(r"^api/log/stat/?$", views.LogStatView.as_view()),
    re_path(r"^api/log/search/?$", views.LogSearchView.as_view()),
    re_path(r"^api/log/self/?$", views.SelfLogView.as_view()),
    re_path(r"^api/log/self/stat/?$", views.SelfLogStatView.as_view()),
    re_path(r"^api/log/self/search/?$", views.SelfLogSearchView.as_view()),
    re_path(r"^api/redemption/?$", views.RedemptionCollectionView.as_view()),
    re_path(r"^api/redemption/search/?$", views.RedemptionSearchView.as_view()),
    re_path(r"^api/redemption/export/?$", views.RedemptionExportView.as_view()),
    re_path(r"^api/redemption/(?P<pk>\d{1,18})/?$", views.RedemptionItemView.as_view()),
    re_path(r"^api/user/dashboard/?$", views.DashboardView.as_view()),
    re_path(r"^api/user/topup/?$", views.RedeemView.as_view()),
    re_path(r"^api/topup/?$", views.AdminTopUpView.as_view()),
]
