"""Input validation for the `/api/user` routes, with One API's limits (`model/user.go` tags).

Unknown fields are ignored: One API's front-ends send back the whole user they read (status,
email, used_quota ...) and only the fields below may be written through these routes.
"""

from __future__ import annotations

from rest_framework import serializers

from accounts.models import Role

USERNAME_MAX = 12
DISPLAY_NAME_MAX = 20
PASSWORD_MIN = 8
PASSWORD_MAX = 20
GROUP_MAX = 32
INT64_MAX = 2**63 - 1


def username_field(*, required: bool) -> serializers.CharField:
    # Optional usernames may be blank: One API (GORM `Updates`) leaves a blank one unchanged.
    return serializers.CharField(
        max_length=USERNAME_MAX, required=required, allow_blank=not required
    )


def display_name_field() -> serializers.CharField:
    return serializers.CharField(
        max_length=DISPLAY_NAME_MAX, required=False, allow_blank=True, allow_null=True
    )


def password_field(*, required: bool) -> serializers.CharField:
    # Blank means "unchanged" where optional; passwords are never trimmed.
    return serializers.CharField(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        required=required,
        allow_blank=not required,
        allow_null=not required,
        trim_whitespace=False,
    )


class SelfUpdateSerializer(serializers.Serializer):
    username = username_field(required=False)
    display_name = display_name_field()
    password = password_field(required=False)


class UserCreateSerializer(serializers.Serializer):
    username = username_field(required=True)
    password = password_field(required=True)
    display_name = display_name_field()
    # Only checked (One API refuses roles >= the caller's); new users are always common.
    role = serializers.IntegerField(required=False)


class UserUpdateSerializer(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=INT64_MAX)
    username = username_field(required=False)
    display_name = display_name_field()
    password = password_field(required=False)
    group = serializers.CharField(max_length=GROUP_MAX, required=False, allow_blank=True)
    quota = serializers.IntegerField(min_value=0, max_value=INT64_MAX, required=False)
    role = serializers.ChoiceField(choices=[Role.COMMON, Role.ADMIN, Role.ROOT], required=False)


class ManageSerializer(serializers.Serializer):
    username = serializers.CharField()
    action = serializers.ChoiceField(choices=["disable", "enable", "delete", "promote", "demote"])
