"""The console's forms. Limits are the `/api` serializers' (One API's), imported from there."""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.conf import settings
from django.forms.renderers import DjangoTemplates
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.serializers import DISPLAY_NAME_MAX, PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX
from billing.models import ApiKey, LogType
from billing.serializers import MAX_BIGINT, TOKEN_NAME_MAX, clean_list
from billing.services import TOKEN_EDITABLE

DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
MAX_INT = 2**31 - 1  # the rate-limit columns are INTEGER


class FieldRenderer(DjangoTemplates):
    """`{{ form.x.as_field_group }}` renders dashboard/field.html: label, input, help, errors."""

    field_template_name = "dashboard/field.html"


class ConsoleForm(forms.Form):
    default_renderer = FieldRenderer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")  # labels sit above their inputs: no colon
        super().__init__(*args, **kwargs)


def _password(label: str, autocomplete: str, *, required: bool = True) -> forms.CharField:
    return forms.CharField(
        label=label,
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        required=required,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": autocomplete}),
    )


class PasswordsMatch(ConsoleForm):
    """`password` and `password2` must be equal."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("password") != data.get("password2"):
            self.add_error("password2", _("The two passwords differ."))
        return data


# --- sign-in and sign-up ---------------------------------------------------------------------


class LoginForm(ConsoleForm):
    username = forms.CharField(
        label=_("Username or email address"),
        max_length=254,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label=_("Password"),
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class RegisterForm(PasswordsMatch):
    username = forms.CharField(
        label=_("Username"),
        max_length=USERNAME_MAX,
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = _password(_("Password"), "new-password")
    password2 = _password(_("Repeat the password"), "new-password")
    email = forms.EmailField(
        label=pgettext_lazy("console", "Email"),
        max_length=50,
        required=False,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    verification_code = forms.CharField(
        label=_("Verification code"),
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )
    aff_code = forms.CharField(max_length=32, required=False, widget=forms.HiddenInput)


class EmailForm(ConsoleForm):
    email = forms.EmailField(
        label=pgettext_lazy("console", "Email"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )


class CodeForm(ConsoleForm):
    code = forms.CharField(
        label=_("Verification code"),
        max_length=64,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )


class EmailBindForm(EmailForm):
    code = forms.CharField(
        label=_("Verification code"),
        max_length=64,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code"}),
    )


# --- personal settings ---------------------------------------------------------------------


class ProfileForm(PasswordsMatch):
    username = forms.CharField(
        label=_("Username"),
        max_length=USERNAME_MAX,
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    display_name = forms.CharField(
        label=_("Display name"), max_length=DISPLAY_NAME_MAX, required=False
    )
    password = _password(_("New password"), "new-password", required=False)
    password2 = _password(_("Repeat the new password"), "new-password", required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["password"].help_text = _("Leave empty to keep the current password.")


class DeleteAccountForm(ConsoleForm):
    confirm = forms.CharField(label=_("Type your username to confirm"), max_length=64)

    def __init__(self, *args: Any, username: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.username = username

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"]
        if value != self.username:
            raise forms.ValidationError(_("This is not your username."))
        return value


# --- API keys ------------------------------------------------------------------------------


def to_timestamp(value: dt.datetime) -> int:
    zone = ZoneInfo(settings.TIME_ZONE)
    aware = value if value.tzinfo else value.replace(tzinfo=zone)
    return int(aware.timestamp())


def from_timestamp(value: int) -> str:
    if value < 0:
        return ""
    return dt.datetime.fromtimestamp(value, ZoneInfo(settings.TIME_ZONE)).strftime(DATETIME_LOCAL)


class TokenForm(ConsoleForm):
    name = forms.CharField(label=_("Name"), max_length=TOKEN_NAME_MAX, required=False)
    expires_at = forms.DateTimeField(
        label=_("Expires at"),
        required=False,
        input_formats=[DATETIME_LOCAL, "%Y-%m-%d %H:%M", "%Y-%m-%d"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
        help_text=_("Leave empty for a key that never expires."),
    )
    unlimited_quota = forms.BooleanField(label=_("Unlimited quota"), required=False)
    remain_quota = forms.IntegerField(
        label=_("Quota"),
        min_value=0,
        max_value=MAX_BIGINT,
        required=False,
        initial=0,
        help_text=_("In quota points; ignored when the quota is unlimited."),
    )
    models = forms.MultipleChoiceField(
        label=_("Allowed models"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None checked: every model available to you."),
    )
    subnet = forms.CharField(
        label=_("Allowed networks"),
        max_length=1024,
        required=False,
        help_text=_("Comma-separated addresses or CIDR ranges; empty: any address."),
    )
    rpm_limit = forms.IntegerField(
        label=_("Requests per minute"), min_value=0, max_value=MAX_INT, required=False, initial=0
    )
    tpm_limit = forms.IntegerField(
        label=_("Tokens per minute"), min_value=0, max_value=MAX_INT, required=False, initial=0
    )
    concurrency_limit = forms.IntegerField(
        label=_("Requests at once"), min_value=0, max_value=MAX_INT, required=False, initial=0
    )
    LIMITS = ("rpm_limit", "tpm_limit", "concurrency_limit")

    def __init__(self, *args: Any, models: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["models"].choices = [(m, m) for m in models]
        for name in self.LIMITS:
            if name in TOKEN_EDITABLE:
                self.fields[name].help_text = _("0: no limit.")
            else:
                del self.fields[name]  # only the limits the key model has

    @property
    def limit_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.LIMITS if name in self.fields]

    @classmethod
    def for_key(cls, key: ApiKey, models: list[str]) -> TokenForm:
        chosen = [m for m in key.models.split(",") if m]
        limits = {name: getattr(key, name, 0) for name in cls.LIMITS}
        return cls(
            initial={
                "name": key.name,
                "expires_at": from_timestamp(key.expired_time),
                "unlimited_quota": key.unlimited_quota,
                "remain_quota": max(key.remain_quota, 0),
                "models": chosen,
                "subnet": key.subnet,
                **limits,
            },
            # Models the key allows that are no longer offered stay choosable, not dropped.
            models=sorted({*models, *chosen}),
        )

    def clean_subnet(self) -> str:
        cleaned = clean_list(self.cleaned_data.get("subnet"))
        for part in cleaned.split(",") if cleaned else ():
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise forms.ValidationError(
                    _("Not an address or network: %(value)s"), params={"value": part}
                ) from None
        return cleaned

    def service_fields(self) -> dict[str, Any]:
        """The fields `billing.services.create_token` / `update_token` take."""
        data = self.cleaned_data
        expires = data.get("expires_at")
        unlimited = bool(data.get("unlimited_quota"))
        fields = {
            "name": data.get("name") or "",
            "expired_time": to_timestamp(expires) if expires else -1,
            "unlimited_quota": unlimited,
            "remain_quota": -1 if unlimited else int(data.get("remain_quota") or 0),
            "models": ",".join(data.get("models") or []),
            "subnet": data.get("subnet") or "",
        }
        fields.update({field.name: int(data.get(field.name) or 0) for field in self.limit_fields})
        return fields


# --- logs and top-up -----------------------------------------------------------------------


class LogFilterForm(ConsoleForm):
    type = forms.TypedChoiceField(
        label=_("Type"),
        coerce=int,
        required=False,
        empty_value=0,
        choices=[
            (0, _("All")),
            (LogType.TOPUP, _("Top-up")),
            (LogType.CONSUME, _("Consumption")),
            (LogType.MANAGE, _("Management")),
            (LogType.SYSTEM, _("System")),
            (LogType.TEST, _("Test")),
        ],
    )
    model_name = forms.CharField(label=_("Model"), max_length=255, required=False)
    token_name = forms.CharField(label=_("API key name"), max_length=64, required=False)
    start = forms.DateTimeField(
        label=_("From"),
        required=False,
        input_formats=[DATETIME_LOCAL],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
    )
    end = forms.DateTimeField(
        label=_("To"),
        required=False,
        input_formats=[DATETIME_LOCAL],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format=DATETIME_LOCAL),
    )
    # Admins only: the view drops these fields for everyone else.
    username = forms.CharField(label=_("User"), max_length=64, required=False)
    channel = forms.IntegerField(label=_("Channel ID"), min_value=0, required=False)

    def __init__(self, *args: Any, admin: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not admin:
            del self.fields["username"]
            del self.fields["channel"]


class RedeemForm(ConsoleForm):
    key = forms.CharField(
        label=_("Redemption code"),
        max_length=64,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
