"""GitHub and Feishu (Lark) sign-in through django-allauth's providers.

One API's front-ends send the user to the provider themselves and hand us `?code=&state=`, so
allauth's own redirect views are not in the path; its provider machinery is: the OAuth2
adapter and client exchange the code, the adapter reads the profile, and the provider turns
it into a `SocialLogin`. The `SocialApp` is built from the options on every request, so a new
client id or secret takes effect without a restart.

What One API stores as the external id is kept: the GitHub *login* (not the numeric id) and
the Feishu `open_id`, so databases migrated from One API keep their bindings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import requests
from allauth.account.utils import user_email
from allauth.socialaccount.models import SocialAccount, SocialApp, SocialLogin
from allauth.socialaccount.providers.feishu.provider import FeishuProvider
from allauth.socialaccount.providers.feishu.views import FeishuOAuth2Adapter
from allauth.socialaccount.providers.github.provider import GitHubProvider
from allauth.socialaccount.providers.github.views import GitHubOAuth2Adapter
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2Adapter
from django.conf import settings
from django.http import HttpRequest

from accounts.models import User
from oneapi import options
from oneapi.api import ApiError

logger = logging.getLogger(__name__)

INVALID_PARAMS = "无效的参数"
EMPTY_PROFILE = "返回值非法，用户字段为空，请稍后重试！"


@dataclass(frozen=True)
class ExternalProvider:
    """One way to sign in with an outside identity, and the `users` column that holds it."""

    allauth_id: str  # allauth's provider id ("" for WeChat, which allauth does not cover)
    field: str
    username_prefix: str  # new accounts are named `<prefix>_<max id + 1>`, as in One API
    default_display_name: str
    service_name: str
    already_bound: str


GITHUB = ExternalProvider(
    "github", "github_id", "github", "GitHub User", "GitHub", "该 GitHub 账户已被绑定"
)
LARK = ExternalProvider("feishu", "lark_id", "lark", "Lark User", "飞书", "该飞书账户已被绑定")
WECHAT = ExternalProvider("", "wechat_id", "wechat", "WeChat User", "微信", "该微信账号已被绑定")
BY_ALLAUTH_ID = {p.allauth_id: p for p in (GITHUB, LARK)}


@dataclass(frozen=True)
class Identity:
    provider: ExternalProvider
    uid: str  # the value stored in `provider.field`
    display_name: str
    email: str
    sociallogin: SocialLogin


# One API's config default when the option is empty. The request's Host header is never used:
# any host is allowed, so a forged Host would put an attacker's domain in a reset link.
DEFAULT_SERVER_ADDRESS = "http://localhost:3000"


def server_address() -> str:
    """The ServerAddress option: the public base URL used in emails and redirect URIs."""
    return options.get_str("ServerAddress").rstrip("/") or DEFAULT_SERVER_ADDRESS


def options_app(provider: ExternalProvider) -> SocialApp:
    """An unsaved allauth `SocialApp` holding the client id and secret from the options."""
    if provider is GITHUB:
        client_id, secret = options.get_str("GitHubClientId"), options.get_str("GitHubClientSecret")
    else:
        client_id, secret = options.get_str("LarkClientId"), options.get_str("LarkClientSecret")
    return SocialApp(
        provider=provider.allauth_id,
        name=provider.service_name,
        client_id=client_id,
        secret=secret,
    )


class GitHubAdapter(GitHubOAuth2Adapter):
    """allauth's GitHub adapter with run-time endpoints and the app from the options."""

    def __init__(self, request: HttpRequest, app: SocialApp) -> None:
        super().__init__(request)
        self.app = app
        self.access_token_url = f"{settings.ONEAPI_GITHUB_URL}/login/oauth/access_token"
        self.authorize_url = f"{settings.ONEAPI_GITHUB_URL}/login/oauth/authorize"
        self.profile_url = f"{settings.ONEAPI_GITHUB_API_URL}/user"
        self.emails_url = f"{settings.ONEAPI_GITHUB_API_URL}/user/emails"

    def get_provider(self) -> GitHubProvider:
        return GitHubProvider(self.request, app=self.app)

    def get_callback_url(self, request: HttpRequest, app: SocialApp) -> str:
        # One API's front-end sends no redirect_uri to GitHub (the app's registered callback
        # applies), so none is sent here either; the client drops empty parameters.
        return ""


class FeishuV2Client(OAuth2Client):
    """Feishu's v2 token endpoint (`authen/v2/oauth/token`, JSON in and out), which One API
    uses; allauth's bundled client speaks the older app_access_token flow."""

    def get_access_token(
        self, code: str, pkce_code_verifier: str | None = None, extra_data: Any = None
    ) -> dict[str, Any]:
        payload = {
            "grant_type": "authorization_code",
            "client_id": self.consumer_key,
            "client_secret": self.consumer_secret,
            "code": code,
            "redirect_uri": self.callback_url,
        }
        from allauth.socialaccount.adapter import get_adapter

        with get_adapter().get_requests_session() as session:
            response = session.post(self.access_token_url, json=payload)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("code") != 0 or not data.get("access_token"):
            detail = data.get("error_description") or data.get("msg") if data else None
            raise OAuth2Error(f"feishu token: {detail or response.status_code}")
        return data


class FeishuAdapter(FeishuOAuth2Adapter):
    client_class = FeishuV2Client

    def __init__(self, request: HttpRequest, app: SocialApp) -> None:
        super().__init__(request)
        self.app = app
        self.access_token_url = f"{settings.ONEAPI_FEISHU_URL}/open-apis/authen/v2/oauth/token"
        self.user_info_url = f"{settings.ONEAPI_FEISHU_URL}/open-apis/authen/v1/user_info"

    def get_provider(self) -> FeishuProvider:
        return FeishuProvider(self.request, app=self.app)

    def get_client(self, request: HttpRequest, app: SocialApp) -> OAuth2Client:
        # The generic OAuth2 client construction, with `client_class` (skips Feishu's v1 one).
        return OAuth2Adapter.get_client(self, request, app)

    def get_callback_url(self, request: HttpRequest, app: SocialApp) -> str:
        # Must equal the redirect_uri the front-end gave Feishu's authorize page.
        return f"{server_address()}/oauth/lark"


def _complete(adapter: OAuth2Adapter, request: HttpRequest, code: str, service: str) -> SocialLogin:
    """Code → token → profile → `SocialLogin` (unsaved), with One API-style messages."""
    if not code:
        raise ApiError(INVALID_PARAMS)
    app = adapter.app  # type: ignore[attr-defined]
    try:
        client = adapter.get_client(request, app)
        token_data = client.get_access_token(code)
        token = adapter.parse_token(token_data)
        token.app = app
        return adapter.complete_login(request, app, token, response=token_data)
    except (OAuth2Error, requests.HTTPError, requests.JSONDecodeError, KeyError, ValueError) as e:
        logger.info("%s sign-in refused: %r", service, e)
        raise ApiError(f"{service} 授权失败，请重新登录") from None
    except requests.RequestException as error:
        logger.warning("%s unreachable: %r", service, error)
        raise ApiError(f"无法连接至 {service} 服务器，请稍后重试！") from None


def identity_of(sociallogin: SocialLogin) -> Identity:
    """What One API keeps of a provider's profile."""
    account = sociallogin.account
    provider = BY_ALLAUTH_ID[account.provider]
    data = account.extra_data or {}
    uid = str(data.get("login") or "") if provider is GITHUB else account.uid
    if not uid:
        raise ApiError(EMPTY_PROFILE)
    max_name = User._meta.get_field("display_name").max_length or 20
    name = str(data.get("name") or "")[:max_name] or provider.default_display_name
    email = user_email(sociallogin.user) if sociallogin.user is not None else ""
    return Identity(provider, uid, name, email or "", sociallogin)


def github_identity(request: HttpRequest, code: str) -> Identity:
    adapter = GitHubAdapter(request, options_app(GITHUB))
    return identity_of(_complete(adapter, request, code, GITHUB.service_name))


def lark_identity(request: HttpRequest, code: str) -> Identity:
    adapter = FeishuAdapter(request, options_app(LARK))
    return identity_of(_complete(adapter, request, code, LARK.service_name))


def remember_social_account(user: User, identity: Identity) -> None:
    """Record the link in allauth's table too, so allauth's own pages (`/accounts/`) see the
    same connections as the `/api` routes."""
    account = identity.sociallogin.account
    SocialAccount.objects.update_or_create(
        provider=account.provider,
        uid=account.uid,
        defaults={"user": user, "extra_data": account.extra_data},
    )
