from __future__ import annotations

from django.urls import path

from oneapi import views

app_name = "oneapi"

urlpatterns = [
    path("api/status", views.status, name="status"),
]
