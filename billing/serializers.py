"""Input validation for the billing `/api` routes; every error names its field."""

from __future__ import annotations

import ipaddress

from rest_framework import serializers

from billing.models import KeyStatus, RedemptionStatus

MAX_BIGINT = 2**63 - 1  # the columns are BIGINT
MAX_INT = 2**31 - 1  # the rate-limit columns are INTEGER
TOKEN_NAME_MAX = 30
REDEMPTION_NAME_MESSAGE = "兑换码名称长度必须在1-20之间"


def quota_field(**kwargs: object) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=MAX_BIGINT, **kwargs)


def rate_limit_field(**kwargs: object) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=MAX_INT, **kwargs)


def clean_list(value: str | None) -> str:
    """Normalise a comma list ("a, b,,c" -> "a,b,c"); the relay ignores blanks anyway."""
    return ",".join(part.strip() for part in (value or "").split(",") if part.strip())


class TokenSerializer(serializers.Serializer):
    """`POST /api/token/` and the full form of `PUT /api/token/`."""

    name = serializers.CharField(
        max_length=TOKEN_NAME_MAX,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        error_messages={"max_length": "令牌名称过长"},
    )
    expired_time = serializers.IntegerField(min_value=-1, max_value=MAX_BIGINT, default=-1)
    # Unlimited keys carry -1 here (the `default` key of every account does).
    remain_quota = serializers.IntegerField(min_value=-MAX_BIGINT, max_value=MAX_BIGINT, default=0)
    unlimited_quota = serializers.BooleanField(default=False)
    models = serializers.CharField(allow_blank=True, allow_null=True, default="")
    subnet = serializers.CharField(allow_blank=True, allow_null=True, default="", max_length=1024)
    # Requests / tokens per minute and requests in flight; 0 = unlimited.
    rpm_limit = rate_limit_field(default=0)
    tpm_limit = rate_limit_field(default=0)
    concurrency_limit = rate_limit_field(default=0)

    def validate_models(self, value: str | None) -> str:
        return clean_list(value)

    def validate_subnet(self, value: str | None) -> str:
        cleaned = clean_list(value)
        for part in cleaned.split(",") if cleaned else ():
            # Like the relay (and unlike Go's ParseCIDR) a bare address means a single host.
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise serializers.ValidationError(f"无效的网段：{part}") from None
        return cleaned


class TokenUpdateSerializer(TokenSerializer):
    """The full update; a `status` in the body is ignored (front-ends send the whole row)."""

    id = serializers.IntegerField(min_value=1)
    # Absent keeps the stored value: a front-end that predates the limits must not clear them.
    rpm_limit = rate_limit_field(required=False)
    tpm_limit = rate_limit_field(required=False)
    concurrency_limit = rate_limit_field(required=False)


class TokenStatusSerializer(serializers.Serializer):
    """`PUT /api/token/?status_only=1`: the rest of the body is ignored, as in One API."""

    id = serializers.IntegerField(min_value=1)
    status = serializers.ChoiceField(choices=[KeyStatus.ENABLED.value, KeyStatus.DISABLED.value])


def redemption_name_field() -> serializers.CharField:
    messages = dict.fromkeys(("required", "blank", "null", "max_length"), REDEMPTION_NAME_MESSAGE)
    return serializers.CharField(max_length=20, error_messages=messages)


class RedemptionCreateSerializer(serializers.Serializer):
    name = redemption_name_field()
    quota = quota_field(default=100)  # the column default in One API
    count = serializers.IntegerField(
        min_value=1,
        max_value=100,
        error_messages={
            "required": "兑换码个数必须大于0",
            "min_value": "兑换码个数必须大于0",
            "max_value": "一次兑换码批量生成的个数不能大于 100",
        },
    )


class RedemptionUpdateSerializer(serializers.Serializer):
    id = serializers.IntegerField(min_value=1)
    name = redemption_name_field()
    quota = quota_field()


class RedemptionStatusSerializer(serializers.Serializer):
    """Only enabled <-> disabled: a used code stays used (see services.set_redemption_status)."""

    id = serializers.IntegerField(min_value=1)
    status = serializers.ChoiceField(
        choices=[RedemptionStatus.ENABLED.value, RedemptionStatus.DISABLED.value]
    )


class RedeemSerializer(serializers.Serializer):
    key = serializers.CharField(allow_blank=True, default="")


class AdminTopUpSerializer(serializers.Serializer):
    user_id = serializers.IntegerField(min_value=1)
    # A top-up of nothing would only write a log (One API accepts it; nothing is gained).
    quota = serializers.IntegerField(
        min_value=1, max_value=MAX_BIGINT, error_messages={"min_value": "quota 必须大于 0！"}
    )
    remark = serializers.CharField(allow_blank=True, default="", max_length=1000)
