"""One API's public and auth `/api` routes, and allauth's own pages under `/accounts/`."""

from __future__ import annotations

from django.urls import include, path, re_path

from accounts import auth_views

urlpatterns = [
    re_path(r"^api/user/login/?$", auth_views.LoginView.as_view()),
    re_path(r"^api/user/logout/?$", auth_views.LogoutView.as_view()),
    re_path(r"^api/user/register/?$", auth_views.RegisterView.as_view()),
    re_path(r"^api/user/reset/?$", auth_views.ResetPasswordView.as_view()),
    re_path(r"^api/verification/?$", auth_views.VerificationView.as_view()),
    re_path(r"^api/reset_password/?$", auth_views.ResetPasswordEmailView.as_view()),
    re_path(r"^api/oauth/state/?$", auth_views.OAuthStateView.as_view()),
    re_path(r"^api/oauth/github/?$", auth_views.GitHubOAuthView.as_view()),
    re_path(r"^api/oauth/lark/?$", auth_views.LarkOAuthView.as_view()),
    re_path(r"^api/oauth/wechat/?$", auth_views.WeChatAuthView.as_view()),
    re_path(r"^api/oauth/wechat/bind/?$", auth_views.WeChatBindView.as_view()),
    re_path(r"^api/oauth/email/bind/?$", auth_views.EmailBindView.as_view()),
    path("accounts/", include("allauth.urls")),
]
