"""`/api/channel` routes; the fixed paths come before `<id>`."""

from __future__ import annotations

from django.urls import re_path

from channels_mgmt import api_views

urlpatterns = [
    re_path(r"^api/channel/?$", api_views.ChannelCollectionView.as_view()),
    re_path(r"^api/channel/search/?$", api_views.ChannelSearchView.as_view()),
    re_path(r"^api/channel/models/?$", api_views.ChannelModelsView.as_view()),
    re_path(r"^api/channel/disabled/?$", api_views.DisabledChannelsView.as_view()),
    re_path(r"^api/channel/test/?$", api_views.AllChannelsTestView.as_view()),
    re_path(r"^api/channel/test/(?P<pk>\d+)/?$", api_views.ChannelTestView.as_view()),
    re_path(r"^api/channel/update_balance/?$", api_views.UpdateAllBalancesView.as_view()),
    re_path(r"^api/channel/update_balance/(?P<pk>\d+)/?$", api_views.ChannelBalanceView.as_view()),
    re_path(r"^api/channel/(?P<pk>\d+)/?$", api_views.ChannelDetailView.as_view()),
]
