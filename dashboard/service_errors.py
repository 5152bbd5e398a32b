"""The services' failure messages (One API's Chinese texts) in the visitor's language.

The services keep One API's exact wording, which `/api` clients match on; the pages show
the same failures translated. A message not listed here is shown as it is.
"""

from __future__ import annotations

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from accounts import auth_services, services, turnstile, wechat
from billing import services as billing
from oneapi.api import ApiError

MESSAGES: dict[str, str | Promise] = {
    auth_services.INVALID_PARAMS: _("The input is not valid."),
    auth_services.PASSWORD_LOGIN_DISABLED: _("Password login is disabled by the administrator."),
    auth_services.WRONG_CREDENTIALS: _("Wrong username or password, or the user is disabled."),
    auth_services.REGISTER_DISABLED: _("Registration is closed by the administrator."),
    auth_services.PASSWORD_REGISTER_DISABLED: _(
        "Registration with a password is closed; sign up with an external account."
    ),
    auth_services.EMAIL_VERIFICATION_REQUIRED: _(
        "Email verification is required: enter your email and the code sent to it."
    ),
    auth_services.WRONG_CODE: _("The verification code is wrong or has expired."),
    auth_services.USERNAME_TAKEN: _("This username is taken."),
    services.USERNAME_TAKEN: _("This username is taken."),
    auth_services.DOMAIN_NOT_ALLOWED: _("Email addresses of this domain are not accepted."),
    auth_services.EMAIL_TAKEN: _("This email address is already in use."),
    auth_services.EMAIL_NOT_REGISTERED: _("No account uses this email address."),
    auth_services.BAD_RESET_LINK: _("The reset link is invalid or has expired."),
    auth_services.USER_BANNED: _("This account is disabled."),
    auth_services.STATE_MISMATCH: _("The sign-in expired or came from elsewhere; try again."),
    auth_services.GITHUB_DISABLED: _("Sign-in with GitHub is not enabled."),
    auth_services.WECHAT_DISABLED: _("Sign-in with WeChat is not enabled."),
    services.CANNOT_DELETE_SELF_ROOT: _("The root account cannot be deleted."),
    turnstile.TOKEN_MISSING: _("Please complete the human verification."),
    turnstile.CHECK_FAILED: _("The human verification failed; reload the page and try again."),
    turnstile.UNREACHABLE: _("The human verification service is unreachable; try again later."),
    wechat.UNREACHABLE: _("The WeChat server is unreachable; try again later."),
    billing.TOKEN_NOT_FOUND: _("This API key does not exist."),
    billing.TOKEN_EXPIRED: _(
        "This key has expired and cannot be enabled: change its expiry time first."
    ),
    billing.TOKEN_EXHAUSTED: _(
        "This key has no quota left and cannot be enabled: raise its quota or make it unlimited."
    ),
    billing.NO_REDEMPTION_KEY: _("Enter a redemption code."),
    billing.INVALID_REDEMPTION_KEY: _("This redemption code is not valid."),
    billing.USED_REDEMPTION_KEY: _("This redemption code has already been used."),
}


def explain(error: ApiError | str) -> str:
    message = error.message if isinstance(error, ApiError) else error
    return str(MESSAGES.get(message, message))
