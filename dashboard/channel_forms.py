"""The channel form: what a person fills in, turned into the `/api/channel` body and validated
by the same serializers (`channels_mgmt.serializers`), so the page and the API accept exactly
the same channels."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from channels_mgmt.models import Channel
from channels_mgmt.serializers import (
    BASE_URL_MAX,
    MODEL_NAME_MAX,
    NAME_MAX,
    ChannelCreateSerializer,
    ChannelUpdateSerializer,
)
from dashboard import channel_types
from dashboard.channel_types import KeyShape
from dashboard.forms import ConsoleForm
from oneapi import options
from relay.catalog import ChannelType

# Form fields that carry a serializer field of another name.
SERIALIZER_TO_FORM = {"models": "models", "group": "groups", "key": "key", "config": "key"}


def explain(message: str) -> str:
    """The serializers' own messages (One API's Chinese) in the visitor's language."""
    if message.startswith("不是合法的 JSON："):
        return _("Not valid JSON: %(error)s") % {"error": message.partition("：")[2]}
    known = {
        "必须是 JSON 对象": _("Must be a JSON object."),
        "必须是名称到名称（字符串）的 JSON 对象": _(
            'Must be a JSON object of model names to model names, e.g. {"gpt-4": "gpt-4o"}.'
        ),
        "该字段不能为空。": _("Enter the key."),
    }
    return str(known.get(message, message))


def group_names() -> list[str]:
    """The groups `GET /api/group` lists (the keys of GroupRatio)."""
    return list(options.get_json("GroupRatio").keys())


def _json_config(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class ChannelForm(ConsoleForm):
    type = forms.TypedChoiceField(label=_("Type"), coerce=int)
    name = forms.CharField(label=_("Name"), max_length=NAME_MAX, required=False)
    key = forms.CharField(
        label=pgettext_lazy("channel", "Key"),  # DRF has its own "Key" (键)
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"}),
    )
    # AWS: three fields instead of the key.
    aws_access_key = forms.CharField(label=_("Access key ID"), max_length=256, required=False)
    aws_secret_key = forms.CharField(
        label=_("Secret access key"),
        max_length=256,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
    )
    base_url = forms.CharField(label=_("Base URL"), max_length=BASE_URL_MAX, required=False)
    groups = forms.MultipleChoiceField(
        label=_("Groups"), required=False, widget=forms.CheckboxSelectMultiple
    )
    models = forms.MultipleChoiceField(
        label=_("Models"), required=False, widget=forms.CheckboxSelectMultiple
    )
    custom_models = forms.CharField(
        label=_("Other models"),
        max_length=4096,
        required=False,
        help_text=_("Comma-separated model names that are not in the list."),
    )
    model_mapping = forms.CharField(
        label=_("Model mapping"),
        required=False,
        strip=False,
        widget=forms.Textarea(
            attrs={
                "rows": 4,
                "spellcheck": "false",
                # console.js checks it as you type (the server decides on submit).
                "data-json-object": _("Not a JSON object of model names."),
            }
        ),
        help_text=_(
            'A JSON object: requested model → model sent upstream, e.g. {"gpt-4": "gpt-4o"}.'
        ),
    )
    system_prompt = forms.CharField(
        label=_("System prompt"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Added to every chat request of this channel."),
    )
    test_model = forms.CharField(
        label=_("Test model"),
        max_length=MODEL_NAME_MAX,
        required=False,
        help_text=_("The model a channel test uses; empty: the first model."),
    )
    priority = forms.IntegerField(label=_("Priority"), required=False, initial=0)
    weight = forms.IntegerField(label=_("Weight"), required=False, initial=1, min_value=0)

    def __init__(
        self, *args: Any, channel: Channel | None = None, channel_type: int | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.channel = channel
        self.changes: dict[str, Any] = {}  # the service's fields, once valid
        self.fields["type"].choices = channel_types.type_choices()
        self.channel_type = self._chosen_type(channel_type)
        self.spec = channel_types.spec(self.channel_type)
        self.config_names = [field.name for field in self.spec.config]
        for field in self.spec.config:
            self.fields[f"config_{field.name}"] = forms.CharField(
                label=field.label,
                max_length=256,
                required=field.required,
                widget=forms.TextInput(attrs={"placeholder": field.placeholder}),
            )
        self._set_hints()
        builtin = channel_types.builtin_models(self.channel_type)
        chosen = self._initial_list("models")
        self.fields["models"].choices = [(m, m) for m in dict.fromkeys([*builtin, *chosen])]
        groups = dict.fromkeys([*group_names(), *self._initial_list("groups")])
        self.fields["groups"].choices = [(g, g) for g in groups]

    # --- building ------------------------------------------------------------------------
    def _chosen_type(self, channel_type: int | None) -> int:
        raw = self.data.get("type") if self.is_bound else None
        raw = raw or channel_type or self.initial.get("type") or ChannelType.OPENAI
        try:
            value = int(raw)
        except (TypeError, ValueError):
            value = int(ChannelType.OPENAI)
        return value if ChannelType.UNKNOWN < value < ChannelType.DUMMY else int(ChannelType.OPENAI)

    def _initial_list(self, name: str) -> list[str]:
        if self.is_bound:
            raw = self.fields[name].widget.value_from_datadict(self.data, self.files, name)
            return [v for v in raw or [] if v]
        return list(self.initial.get(name) or [])

    def _set_hints(self) -> None:
        key = self.fields["key"]
        editing = self.channel is not None
        if self.spec.key_shape == KeyShape.VERTEX:
            key.label = _("Service account key (JSON)")
            key.widget.attrs["rows"] = 8
        if editing:
            key.help_text = _("Leave empty to keep the current key.")
        else:
            key.help_text = _("%(hint)s One key per line adds one channel per key.") % {
                "hint": self.spec.key_hint
            }
        if editing or self.spec.key_shape == KeyShape.VERTEX:
            key.help_text = f"{self.spec.key_hint} {key.help_text}"
        default = channel_types.default_base_url(self.channel_type)
        base = self.fields["base_url"]
        base.required = self.spec.base_url_required
        base.widget.attrs["placeholder"] = default
        base.help_text = self.spec.base_url_hint or (
            _("Empty: %(url)s") % {"url": default} if default else ""
        )

    @classmethod
    def for_channel(cls, channel: Channel) -> ChannelForm:
        config = _json_config(channel.config)
        initial: dict[str, Any] = {
            "type": channel.type,
            "name": channel.name,
            "base_url": channel.base_url,
            "groups": channel.group_list(),
            "models": channel.model_list(),
            "model_mapping": channel.model_mapping,
            "system_prompt": channel.system_prompt,
            "test_model": channel.test_model,
            "priority": channel.priority,
            "weight": channel.weight,
        }
        initial.update({f"config_{name}": value for name, value in config.items()})
        return cls(initial=initial, channel=channel)

    @property
    def config_fields(self) -> list[forms.BoundField]:
        return [self[f"config_{name}"] for name in self.config_names]

    @property
    def key_shape(self) -> str:
        return str(self.spec.key_shape)

    # --- validation ----------------------------------------------------------------------
    def clean(self) -> dict[str, Any]:
        data = super().clean()
        key = self._key(data)
        if self.channel is None and not key.strip():
            self.add_error(
                "key" if self.spec.key_shape != KeyShape.AWS else "aws_access_key",
                _("Enter the key."),
            )
        data["key"] = key
        if self.errors:
            return data
        self._validate_with_api(data)
        return data

    def _key(self, data: dict[str, Any]) -> str:
        """The stored key of the chosen type: `ak|sk|region` for AWS, the service account
        JSON on one line for Vertex AI (one line: a batch add splits keys by lines)."""
        if self.spec.key_shape == KeyShape.AWS:
            access, secret = data.get("aws_access_key", ""), data.get("aws_secret_key", "")
            if not access and not secret:
                return ""
            if not access or not secret:
                self.add_error("aws_secret_key", _("Enter both the access key and the secret."))
                return ""
            return f"{access.strip()}|{secret.strip()}|{data.get('config_region', '').strip()}"
        raw = data.get("key") or ""
        if self.spec.key_shape == KeyShape.VERTEX and raw.strip():
            try:
                account = json.loads(raw)
            except ValueError:
                self.add_error("key", _("This is not a JSON key file."))
                return ""
            if not isinstance(account, dict) or not account.get("private_key"):
                self.add_error("key", _("The JSON has no private_key: is it a key file?"))
                return ""
            return json.dumps(account, separators=(",", ":"))
        return raw

    def api_body(self, data: dict[str, Any]) -> dict[str, Any]:
        """The `/api/channel` JSON body these fields make."""
        custom = [m.strip() for m in (data.get("custom_models") or "").split(",") if m.strip()]
        config = {
            name: data.get(f"config_{name}", "").strip()
            for name in self.config_names
            if data.get(f"config_{name}", "").strip()
        }
        body: dict[str, Any] = {
            "type": self.channel_type,
            "name": data.get("name") or "",
            "key": data.get("key") or "",
            "base_url": data.get("base_url") or "",
            "models": list(dict.fromkeys([*data.get("models", []), *custom])),
            "group": data.get("groups") or [],
            "model_mapping": data.get("model_mapping") or "",
            "system_prompt": data.get("system_prompt") or "",
            "test_model": data.get("test_model") or "",
            "priority": data.get("priority") or 0,
            "weight": 1 if data.get("weight") is None else data["weight"],
            "config": json.dumps(config, ensure_ascii=False) if config else "",
        }
        if self.channel is not None:
            body["id"] = self.channel.pk
            if not body["group"]:
                body["group"] = ["default"]
        return body

    def _validate_with_api(self, data: dict[str, Any]) -> None:
        serializer_class = ChannelUpdateSerializer if self.channel else ChannelCreateSerializer
        serializer = serializer_class(data=self.api_body(data))
        if serializer.is_valid():
            self.changes = serializer.changes()
            return
        for name, messages in serializer.errors.items():
            field = SERIALIZER_TO_FORM.get(name, name)
            for message in messages:
                self.add_error(field if field in self.fields else None, explain(str(message)))
