"""The console's pages, at One API's front-end paths. None of them is a relay path
(`relay.routes.is_relay_path`): the relay would answer those before Django sees them."""

from __future__ import annotations

from django.urls import include, path, re_path

from dashboard.views import (
    assets,
    auth,
    catalog,
    channels,
    logs,
    oauth,
    overview,
    profile,
    public,
    redemptions,
    system_settings,
    tokens,
    topup,
    users,
)

app_name = "dashboard"

urlpatterns = [
    # Public
    path("", public.home, name="home"),
    path("about", public.about, name="about"),
    path("login", auth.login, name="login"),
    path("logout", auth.logout_view, name="logout"),
    path("register", auth.register, name="register"),
    path("register/code", auth.register_code, name="register-code"),
    path("reset", auth.reset_request, name="reset"),
    path("user/reset", auth.reset_confirm, name="reset-confirm"),  # the link in reset mails
    path("login/github", oauth.github_start, name="github-start"),
    path("oauth/github", oauth.github_callback, name="github-callback"),
    path("login/lark", oauth.lark_start, name="lark-start"),
    path("oauth/lark", oauth.lark_callback, name="lark-callback"),
    path("login/wechat", oauth.wechat_login, name="wechat-login"),
    # Signed-in users
    path("dashboard", overview.overview, name="overview"),
    path("token", tokens.token_list, name="tokens"),
    path("token/add", tokens.token_add, name="token-add"),
    path("token/edit/<int:token_id>", tokens.token_edit, name="token-edit"),
    path("token/<int:token_id>/status", tokens.token_status, name="token-status"),
    path("token/<int:token_id>/delete", tokens.token_delete, name="token-delete"),
    path("log", logs.logs, name="logs"),
    path("topup", topup.topup, name="topup"),
    path("model", catalog.models, name="models"),
    path("setting", profile.settings_page, name="settings"),
    path("setting/profile", profile.profile, name="settings-profile"),
    path("setting/access-token", profile.access_token, name="settings-access-token"),
    path("setting/invitation", profile.invitation, name="settings-invitation"),
    path("setting/email/code", profile.email_code, name="settings-email-code"),
    path("setting/email", profile.email_bind, name="settings-email"),
    path("setting/wechat", profile.wechat_bind, name="settings-wechat"),
    path("setting/delete", profile.delete_account, name="settings-delete"),
    # Admin pages go here (channel, user, redemption, setting/...): see dashboard.navigation.
    path("channel", channels.channel_list, name="channels"),
    path("channel/add", channels.channel_add, name="channel-add"),
    path("channel/edit/<int:channel_id>", channels.channel_edit, name="channel-edit"),
    path("channel/type-fields", channels.channel_type_fields, name="channel-type-fields"),
    path("channel/balance", channels.channel_balances, name="channels-balance"),
    path("channel/test", channels.channel_test_all, name="channels-test"),
    path(
        "channel/disabled/delete",
        channels.channels_delete_disabled,
        name="channels-delete-disabled",
    ),
    path("channel/<int:channel_id>/field", channels.channel_field, name="channel-field"),
    path("channel/<int:channel_id>/status", channels.channel_status, name="channel-status"),
    path("channel/<int:channel_id>/test", channels.channel_test, name="channel-test"),
    path("channel/<int:channel_id>/balance", channels.channel_balance, name="channel-balance"),
    path("channel/<int:channel_id>/delete", channels.channel_delete, name="channel-delete"),
    path("user", users.users, name="users"),
    path("user/add", users.user_add, name="user-add"),
    path("user/edit/<int:user_id>", users.user_edit, name="user-edit"),
    re_path(
        r"^user/(?P<user_id>[0-9]+)/(?P<action>enable|disable|promote|demote|delete)$",
        users.user_manage,
        name="user-manage",
    ),
    path("redemption", redemptions.redemptions, name="redemptions"),
    path("redemption/add", redemptions.redemption_add, name="redemption-add"),
    path("redemption/export", redemptions.redemption_export, name="redemption-export"),
    path(
        "redemption/<int:redemption_id>/status",
        redemptions.redemption_status,
        name="redemption-status",
    ),
    path(
        "redemption/<int:redemption_id>/delete",
        redemptions.redemption_delete,
        name="redemption-delete",
    ),
    path("setting/system", system_settings.system_settings, name="system-settings"),
    path(
        "setting/system/preview",
        system_settings.system_settings_preview,
        name="system-settings-preview",
    ),
    re_path(
        r"^setting/system/(?P<section>system|operation|ratios|content)$",
        system_settings.system_settings,
        name="system-settings-section",
    ),
    # Language switch (Django's set_language view) and static files.
    path("i18n/", include("django.conf.urls.i18n")),
    re_path(r"^static/(?P<path>.+)$", assets.static, name="static"),
]
