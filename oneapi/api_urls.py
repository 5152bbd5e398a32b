"""`/api` routes of the site itself; each app adds its own in its `api_urls`."""

from __future__ import annotations

from django.urls import re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from oneapi import api_views

urlpatterns = [
    re_path(r"^api/notice/?$", api_views.OptionPage.as_view(option_key="Notice")),
    re_path(r"^api/about/?$", api_views.OptionPage.as_view(option_key="About")),
    re_path(
        r"^api/home_page_content/?$",
        api_views.OptionPage.as_view(option_key="HomePageContent"),
    ),
    re_path(r"^api/option/?$", api_views.OptionView.as_view()),
    re_path(r"^api/group/?$", api_views.GroupView.as_view()),
    re_path(r"^api/models/?$", api_views.ModelTableView.as_view()),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="api-schema"),
    re_path(r"^api/schema/ui/?$", SpectacularSwaggerView.as_view(url_name="api-schema")),
]
