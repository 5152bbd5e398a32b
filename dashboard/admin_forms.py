"""Forms of the admin pages (users, redemption codes). Limits are the `/api` serializers'
(One API's), imported from there."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from accounts.serializers import (
    DISPLAY_NAME_MAX,
    GROUP_MAX,
    INT64_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    USERNAME_MAX,
)
from billing.serializers import MAX_BIGINT
from dashboard import display
from dashboard.forms import ConsoleForm, PasswordsMatch

REDEMPTION_NAME_MAX = 20  # billing.serializers.redemption_name_field
REDEMPTION_BATCH_MAX = 100  # RedemptionCreateSerializer.count


def _password(label: str, *, required: bool) -> forms.CharField:
    return forms.CharField(
        label=label,
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        required=required,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


def quota_help() -> str:
    return _("In quota points; %(points)s points make 1 USD.") % {
        "points": f"{int(display.quota_per_unit()):,}"
    }


class UserCreateForm(PasswordsMatch):
    username = forms.CharField(
        label=_("Username"),
        max_length=USERNAME_MAX,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    display_name = forms.CharField(
        label=_("Display name"), max_length=DISPLAY_NAME_MAX, required=False
    )
    password = _password(_("Password"), required=True)
    password2 = _password(_("Repeat the password"), required=True)


class UserEditForm(PasswordsMatch):
    username = forms.CharField(label=_("Username"), max_length=USERNAME_MAX)
    display_name = forms.CharField(
        label=_("Display name"), max_length=DISPLAY_NAME_MAX, required=False
    )
    password = _password(_("New password"), required=False)
    password2 = _password(_("Repeat the new password"), required=False)
    group = forms.ChoiceField(label=_("Group"))
    quota = forms.IntegerField(
        label=_("Quota"),
        min_value=0,
        max_value=INT64_MAX,
    )
    # The quota the form was shown with: a quota the admin left alone is not written back,
    # so what the user spent meanwhile is not undone by saving a name change.
    quota_seen = forms.IntegerField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, groups: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["group"].choices = [(g, g) for g in groups]
        self.fields["group"].max_length = GROUP_MAX
        self.fields["password"].help_text = _("Leave empty to keep the current password.")
        self.fields["quota"].help_text = quota_help()

    @classmethod
    def for_user(cls, user: dict[str, Any], groups: list[str]) -> UserEditForm:
        return cls(
            initial={
                "username": user["username"],
                "display_name": user["display_name"],
                "group": user["group"],
                "quota": user["quota"],
                "quota_seen": user["quota"],
            },
            groups=sorted({*groups, user["group"]}),
        )

    def service_fields(self) -> dict[str, Any]:
        """The keyword arguments of `accounts.services.update_user`."""
        data = self.cleaned_data
        fields: dict[str, Any] = {
            "username": data["username"],
            "display_name": data.get("display_name") or "",
            "password": data.get("password") or None,
            "group": data["group"],
        }
        if data["quota"] != data.get("quota_seen"):
            fields["quota"] = data["quota"]
        return fields


class RedemptionCreateForm(ConsoleForm):
    name = forms.CharField(
        label=_("Name"),
        max_length=REDEMPTION_NAME_MAX,
        widget=forms.TextInput(attrs={"autofocus": True}),
        help_text=_("Codes of one batch share it; the CSV export is by name."),
    )
    count = forms.IntegerField(
        label=_("Number of codes"), min_value=1, max_value=REDEMPTION_BATCH_MAX, initial=1
    )
    quota = forms.IntegerField(
        label=_("Quota of each code"),
        min_value=0,
        max_value=MAX_BIGINT,
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["quota"].initial = int(display.quota_per_unit())
        self.fields["quota"].help_text = quota_help()
