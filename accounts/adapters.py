"""allauth adapters: allauth's own pages (`/accounts/...`) follow One API's options and create
accounts the way the `/api` routes do.

- Sign-up is open only when RegisterEnabled and PasswordRegisterEnabled are on, and not while
  EmailVerificationEnabled asks for One API's email code (allauth's form does not check it).
- Password login honours PasswordLoginEnabled; usernames and passwords have One API's limits.
- Social apps (GitHub, Feishu) come from the options at request time, not from the database.
- New accounts go through `create_account` (quota, invitation rewards, default key), and an
  identity already bound the One API way (`users.github_id` / `lark_id`) logs into its user.
"""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialLogin
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from accounts import auth_services
from accounts.email import from_address
from accounts.models import User
from accounts.oauth import BY_ALLAUTH_ID, GITHUB, LARK, identity_of, options_app
from accounts.registration import create_account
from accounts.serializers import PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX
from oneapi import options
from oneapi.api import ApiError


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return (
            options.get_bool("RegisterEnabled")
            and options.get_bool("PasswordRegisterEnabled")
            and not options.get_bool("EmailVerificationEnabled")
        )

    def authenticate(self, request: HttpRequest, **credentials: Any) -> User | None:
        if not options.get_bool("PasswordLoginEnabled"):
            raise ValidationError(auth_services.PASSWORD_LOGIN_DISABLED)
        return super().authenticate(request, **credentials)

    def clean_username(self, username: str, shallow: bool = False) -> str:
        if len(username) > USERNAME_MAX:
            raise ValidationError(f"用户名长度不能超过 {USERNAME_MAX} 个字符")
        return super().clean_username(username, shallow=shallow)

    def clean_password(self, password: str, user: User | None = None) -> str:
        if not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
            raise ValidationError(f"密码长度应为 {PASSWORD_MIN}–{PASSWORD_MAX} 个字符")
        return super().clean_password(password, user=user)

    def get_from_email(self) -> str:
        return from_address()

    def save_user(self, request: HttpRequest, user: User, form: Any, commit: bool = True) -> User:
        user = super().save_user(request, user, form, commit=False)
        if not commit:
            return user
        data = form.cleaned_data
        return create_account(
            user.username,
            data.get("password1") or data.get("password"),
            display_name=user.username,
            email=user.email or "",
        )


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def list_apps(
        self, request: HttpRequest | None, provider: str | None = None, client_id: str | None = None
    ) -> list[SocialApp]:
        apps = []
        if options.get_bool("GitHubOAuthEnabled") and options.get_str("GitHubClientId"):
            apps.append(options_app(GITHUB))
        if options.get_str("LarkClientId"):  # One API has no switch for Lark: the id is it
            apps.append(options_app(LARK))
        return [
            app
            for app in apps
            if (provider is None or app.provider == provider)
            and (client_id is None or app.client_id == client_id)
        ]

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return options.get_bool("RegisterEnabled")

    def populate_user(
        self, request: HttpRequest, sociallogin: SocialLogin, data: dict[str, Any]
    ) -> User:
        user = super().populate_user(request, sociallogin, data)
        max_length = User._meta.get_field("display_name").max_length
        user.display_name = (data.get("name") or "")[:max_length]
        return user

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        """An identity bound through the `/api` routes or in One API (a `users` column, no
        allauth row yet) logs into that user: record the link and let allauth find it."""
        if sociallogin.is_existing or sociallogin.account.provider not in BY_ALLAUTH_ID:
            return
        try:
            identity = identity_of(sociallogin)
        except ApiError:
            return  # no usable id in the profile: allauth's own matching applies
        user = User.objects.filter(**{identity.provider.field: identity.uid}).first()
        if user is None:
            return
        SocialAccount.objects.get_or_create(
            provider=sociallogin.account.provider,
            uid=sociallogin.account.uid,
            defaults={"user": user, "extra_data": sociallogin.account.extra_data},
        )
        sociallogin.lookup()

    def save_user(self, request: HttpRequest, sociallogin: SocialLogin, form: Any = None) -> User:
        """A new account named like One API's (`github_<n>`), with the identity column set."""
        identity = identity_of(sociallogin)
        user = auth_services.new_external_account(
            identity.provider, identity.uid, identity.display_name, identity.email
        )
        sociallogin.user = user
        sociallogin.account.user = user
        sociallogin.account.save()
        return user
