"""What the channel form asks for, per channel type: the shape of the key, whether a base URL
is needed (and its default), and which `config` fields the type's adaptor reads
(relay/adaptors/*: azure `api_version`, aws `region` + `ak|sk|region` key, vertex
`vertex_ai_project_id` / `region` + service-account key, cloudflare and coze `user_id`, ...).

Secrets only ever go into `key`, which no `/api` answer carries; `config` is shown back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from relay.adaptors.azure import DEFAULT_API_VERSION as AZURE_API_VERSION
from relay.adaptors.vertex import DEFAULT_REGION as VERTEX_REGION
from relay.adaptors.xunfei import DEFAULT_VERSION as XUNFEI_VERSION
from relay.catalog import (
    CHANNEL_TYPE_NAMES,
    DEFAULT_BASE_URLS,
    MODELS_BY_CHANNEL_TYPE,
    ChannelType,
)


class KeyShape(StrEnum):
    TEXT = "text"  # one secret per line (a batch add makes one channel per line)
    AWS = "aws"  # access key, secret key and region fields, stored as `ak|sk|region`
    VERTEX = "vertex"  # a service-account JSON file, stored on one line


@dataclass(frozen=True)
class ConfigField:
    name: str  # the key inside `config`
    label: str | Promise
    placeholder: str = ""
    required: bool = False


@dataclass(frozen=True)
class TypeSpec:
    key_hint: str | Promise
    key_shape: KeyShape = KeyShape.TEXT
    base_url_required: bool = False
    base_url_hint: str | Promise = ""
    config: tuple[ConfigField, ...] = ()


API_KEY_HINT = _("The API key, e.g. sk-…")
PIPE_KEY_HINT = _("Several values in one key, separated by |: %(format)s")

SPECS: dict[int, TypeSpec] = {
    ChannelType.AZURE: TypeSpec(
        _("The Azure OpenAI resource key."),
        base_url_required=True,
        base_url_hint=_("Your resource endpoint, e.g. https://example.openai.azure.com"),
        config=(ConfigField("api_version", _("API version"), AZURE_API_VERSION),),
    ),
    ChannelType.CUSTOM: TypeSpec(API_KEY_HINT, base_url_required=True),
    ChannelType.OPENAI_COMPATIBLE: TypeSpec(API_KEY_HINT, base_url_required=True),
    ChannelType.PROXY: TypeSpec(
        API_KEY_HINT,
        base_url_required=True,
        base_url_hint=_("Requests to /v1/oneapi/proxy/<id>/… are forwarded to this address."),
    ),
    ChannelType.AWS_CLAUDE: TypeSpec(
        _("An IAM access key allowed to invoke Bedrock models."),
        key_shape=KeyShape.AWS,
        config=(ConfigField("region", _("Region"), "us-east-1", required=True),),
    ),
    ChannelType.VERTEX_AI: TypeSpec(
        _("The JSON key file of a service account with the Vertex AI User role."),
        key_shape=KeyShape.VERTEX,
        config=(
            ConfigField("region", _("Region"), VERTEX_REGION),
            ConfigField(
                "vertex_ai_project_id", _("Project ID"), _("Empty: the key file's project")
            ),
        ),
    ),
    ChannelType.CLOUDFLARE: TypeSpec(
        _("A Cloudflare API token allowed to use Workers AI."),
        config=(ConfigField("user_id", _("Account ID"), required=True),),
    ),
    ChannelType.COZE: TypeSpec(
        _("A Coze personal access token."),
        config=(ConfigField("user_id", _("User ID")),),
    ),
    ChannelType.AIPROXY_LIBRARY: TypeSpec(
        API_KEY_HINT, config=(ConfigField("library_id", _("Knowledge base ID"), required=True),)
    ),
    ChannelType.ALI: TypeSpec(API_KEY_HINT, config=(ConfigField("plugin", _("Plugin")),)),
    ChannelType.GEMINI: TypeSpec(
        _("A Google AI Studio API key."),
        config=(ConfigField("api_version", _("API version"), "v1beta"),),
    ),
    ChannelType.BAIDU: TypeSpec(PIPE_KEY_HINT % {"format": "API Key|Secret Key"}),
    ChannelType.TENCENT: TypeSpec(
        PIPE_KEY_HINT % {"format": "AppId|SecretId|SecretKey"},
        config=(ConfigField("region", _("Region"), "ap-guangzhou"),),
    ),
    ChannelType.XUNFEI: TypeSpec(
        PIPE_KEY_HINT % {"format": "APPID|APISecret|APIKey"},
        config=(ConfigField("api_version", _("Spark version"), XUNFEI_VERSION),),
    ),
    ChannelType.ZHIPU: TypeSpec(_("The API key, in the form id.secret.")),
    ChannelType.OLLAMA: TypeSpec(_("Any text: Ollama does not check keys.")),
}


def spec(channel_type: int) -> TypeSpec:
    return SPECS.get(channel_type, TypeSpec(API_KEY_HINT))


def type_choices() -> list[tuple[int, str]]:
    """Every real type, by One API's display name, with its number (as One API lists them)."""
    return [
        (number, f"{CHANNEL_TYPE_NAMES[number]} ({number})")
        for number in range(ChannelType.OPENAI, ChannelType.DUMMY)
    ]


def default_base_url(channel_type: int) -> str:
    return DEFAULT_BASE_URLS.get(channel_type, "")


def builtin_models(channel_type: int) -> list[str]:
    """The type's model list, as `GET /api/models` gives it."""
    return list(MODELS_BY_CHANNEL_TYPE.get(channel_type, []))


def type_name(channel_type: int) -> str:
    return CHANNEL_TYPE_NAMES.get(channel_type, str(channel_type))
