"""Channel JSON in and out of the `/api/channel` routes, with One API's field names.

Unknown fields are ignored: One API's channel editor sends back the whole channel it read
(balance, used_quota, response_time ...), and those are never written through these routes.
A `null` is treated as an absent field, the way GORM skips nil pointers.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import serializers

from channels_mgmt.models import Channel, ChannelStatus
from relay.catalog import ChannelType

NAME_MAX = 128
BASE_URL_MAX = 512
MODEL_NAME_MAX = 255  # abilities.model
GROUP_NAME_MAX = 32  # abilities.group, as One API's varchar(32)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
WEIGHT_MAX = 2**31 - 1
CHANNEL_TYPES = [int(t) for t in ChannelType if ChannelType.UNKNOWN < t < ChannelType.DUMMY]
STATUSES = [int(s) for s in ChannelStatus if s != ChannelStatus.UNKNOWN]

# One API's JSON field order, minus `key`; request_count and test_model are ours.
OUTPUT_FIELDS = (
    "id",
    "type",
    "status",
    "name",
    "weight",
    "created_time",
    "test_time",
    "response_time",
    "base_url",
    "other",
    "balance",
    "balance_updated_time",
    "models",
    "group",
    "used_quota",
    "model_mapping",
    "priority",
    "config",
    "system_prompt",
    "test_model",
    "request_count",
)


class ChannelOutSerializer(serializers.ModelSerializer):
    """A channel as the admin API shows it: never with its key."""

    class Meta:
        model = Channel
        fields = OUTPUT_FIELDS
        read_only_fields = OUTPUT_FIELDS


def channel_json(channel: Channel) -> dict[str, Any]:
    return dict(ChannelOutSerializer(channel).data)


def channels_json(channels: Any) -> list[dict[str, Any]]:
    return [dict(item) for item in ChannelOutSerializer(channels, many=True).data]


class CommaListField(serializers.Field):
    """A comma-separated name list (models, groups), stored trimmed and without repeats.

    One API's front-ends send a string; a JSON list of strings is accepted as well."""

    default_error_messages = {
        "invalid": "必须是以逗号分隔的字符串或字符串数组",
        "too_long": "名称 {name} 超过 {max_length} 个字符",
    }

    def __init__(self, *, item_max_length: int, **kwargs: Any) -> None:
        self.item_max_length = item_max_length
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, str):
            items = data.split(",")
        elif isinstance(data, list) and all(isinstance(item, str) for item in data):
            items = data
        else:
            self.fail("invalid")
        names = list(dict.fromkeys(item.strip() for item in items if item.strip()))
        for name in names:
            if len(name) > self.item_max_length:
                self.fail("too_long", name=name, max_length=self.item_max_length)
        return ",".join(names)

    def to_representation(self, value: str) -> str:
        return value


class JSONObjectTextField(serializers.Field):
    """A JSON object kept as text (model_mapping, config); an object is accepted too.

    A string is stored as sent, so the editor's own formatting survives the round trip."""

    default_error_messages = {
        "invalid": "必须是 JSON 对象",
        "bad_json": "不是合法的 JSON：{error}",
        "not_strings": "必须是名称到名称（字符串）的 JSON 对象",
    }

    def __init__(self, *, string_values: bool = False, **kwargs: Any) -> None:
        self.string_values = string_values
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if isinstance(data, dict):
            value, text = data, json.dumps(data, ensure_ascii=False)
        elif isinstance(data, str):
            if not data.strip():
                return ""
            try:
                value, text = json.loads(data), data
            except ValueError as error:
                self.fail("bad_json", error=error)
        else:
            self.fail("invalid")
        if not isinstance(value, dict):
            self.fail("invalid")
        if self.string_values and not all(isinstance(v, str) for v in value.values()):
            self.fail("not_strings")
        return text

    def to_representation(self, value: str) -> str:
        return value


def optional_text(max_length: int | None = None) -> serializers.CharField:
    return serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=max_length,
        trim_whitespace=False,
    )


class ChannelFieldsSerializer(serializers.Serializer):
    """The writable fields shared by create and update."""

    type = serializers.ChoiceField(choices=CHANNEL_TYPES, required=False, allow_null=True)
    name = optional_text(NAME_MAX)
    base_url = optional_text(BASE_URL_MAX)
    other = optional_text()
    models = CommaListField(item_max_length=MODEL_NAME_MAX, required=False, allow_null=True)
    group = CommaListField(item_max_length=GROUP_NAME_MAX, required=False, allow_null=True)
    model_mapping = JSONObjectTextField(string_values=True, required=False, allow_null=True)
    priority = serializers.IntegerField(
        min_value=INT64_MIN, max_value=INT64_MAX, required=False, allow_null=True
    )
    weight = serializers.IntegerField(
        min_value=0, max_value=WEIGHT_MAX, required=False, allow_null=True
    )
    config = JSONObjectTextField(required=False, allow_null=True)
    system_prompt = optional_text()
    status = serializers.ChoiceField(choices=STATUSES, required=False, allow_null=True)
    test_model = optional_text(MODEL_NAME_MAX)

    def validate_name(self, value: str | None) -> str | None:
        return value.strip() if value is not None else None

    def validate_base_url(self, value: str | None) -> str | None:
        # The editor trims one trailing slash; paths are appended to the base as is.
        return value.strip().rstrip("/") if value is not None else None

    def validate_test_model(self, value: str | None) -> str | None:
        return value.strip() if value is not None else None

    def changes(self) -> dict[str, Any]:
        """The validated fields that were given, `null` ones dropped."""
        return {name: value for name, value in self.validated_data.items() if value is not None}


class ChannelCreateSerializer(ChannelFieldsSerializer):
    # One key per line: the batch add creates one channel per non-empty line.
    key = serializers.CharField(trim_whitespace=False)

    def validate_key(self, value: str) -> str:
        if not any(line.strip() for line in value.splitlines()):
            raise serializers.ValidationError("该字段不能为空。")
        return value

    def changes(self) -> dict[str, Any]:
        fields = super().changes()
        fields.setdefault("type", int(ChannelType.OPENAI))
        if not fields.get("group"):
            fields["group"] = "default"
        return fields


class ChannelUpdateSerializer(ChannelFieldsSerializer):
    id = serializers.IntegerField(min_value=1)
    # Blank means "keep the old key": the editor never receives the key it would send back.
    key = serializers.CharField(
        required=False, allow_blank=True, allow_null=True, trim_whitespace=False
    )

    def validate_key(self, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        key = value.strip()
        if "\n" in key or "\r" in key:
            raise serializers.ValidationError("编辑渠道时只能填写一个密钥")
        return key

    def changes(self) -> dict[str, Any]:
        fields = super().changes()
        fields.pop("id", None)
        if fields.get("group") == "":
            del fields["group"]  # as GORM's `Updates` skips it: a channel without groups is lost
        return fields
