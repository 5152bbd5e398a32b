"""One module per upstream family; `adaptor_for` picks the one a channel type needs."""

from __future__ import annotations

from relay.adaptors.aiproxy_library import AIProxyLibraryAdaptor
from relay.adaptors.ali import AliAdaptor
from relay.adaptors.anthropic import AnthropicAdaptor
from relay.adaptors.aws import AwsAdaptor
from relay.adaptors.azure import AzureAdaptor
from relay.adaptors.baidu import BaiduAdaptor
from relay.adaptors.base import Adaptor
from relay.adaptors.cloudflare import CloudflareAdaptor
from relay.adaptors.cohere import CohereAdaptor
from relay.adaptors.coze import CozeAdaptor
from relay.adaptors.deepl import DeepLAdaptor
from relay.adaptors.gemini import GeminiAdaptor
from relay.adaptors.ollama import OllamaAdaptor
from relay.adaptors.openai import OpenAIAdaptor
from relay.adaptors.palm import PaLMAdaptor
from relay.adaptors.replicate import ReplicateAdaptor
from relay.adaptors.tencent import TencentAdaptor
from relay.adaptors.vertex import VertexAIAdaptor
from relay.adaptors.xunfei import XunfeiAdaptor
from relay.adaptors.zhipu import ZhipuAdaptor
from relay.catalog import CHANNEL_TYPE_NAMES, ChannelType
from relay.errors import RelayError

# Channel types whose upstream is OpenAI's API at another base URL (or vendor paths, see
# `relay.adaptors.openai.VENDOR_PATHS`), with a Bearer key.
OPENAI_COMPATIBLE_TYPES = frozenset(
    {
        ChannelType.OPENAI,
        ChannelType.API2D,
        ChannelType.CLOSEAI,
        ChannelType.OPENAI_SB,
        ChannelType.OPENAI_MAX,
        ChannelType.OHMYGPT,
        ChannelType.CUSTOM,
        ChannelType.AILS,
        ChannelType.AIPROXY,
        ChannelType.API2GPT,
        ChannelType.AIGC2D,
        ChannelType.MOONSHOT,
        ChannelType.MISTRAL,
        ChannelType.GROQ,
        ChannelType.LINGYIWANWU,
        ChannelType.STEPFUN,
        ChannelType.DEEPSEEK,
        ChannelType.TOGETHERAI,
        ChannelType.SILICONFLOW,
        ChannelType.XAI,
        ChannelType.OPENAI_COMPATIBLE,
        ChannelType.AI360,
        ChannelType.OPENROUTER,
        ChannelType.FASTGPT,
        ChannelType.BAICHUAN,
        ChannelType.MINIMAX,
        ChannelType.DOUBAO,
        ChannelType.NOVITA,
        ChannelType.BAIDU_V2,
        ChannelType.XUNFEI_V2,
        ChannelType.ALI_BAILIAN,
        ChannelType.GEMINI_OPENAI_COMPATIBLE,
    }
)

_openai = OpenAIAdaptor()
ADAPTORS: dict[int, Adaptor] = dict.fromkeys(OPENAI_COMPATIBLE_TYPES, _openai)
# Converting families, one entry per channel type.
ADAPTORS[ChannelType.ALI] = AliAdaptor()
ADAPTORS[ChannelType.TENCENT] = TencentAdaptor()
ADAPTORS[ChannelType.XUNFEI] = XunfeiAdaptor()
ADAPTORS[ChannelType.AZURE] = AzureAdaptor()
ADAPTORS[ChannelType.ANTHROPIC] = AnthropicAdaptor()
ADAPTORS[ChannelType.GEMINI] = GeminiAdaptor()
ADAPTORS[ChannelType.BAIDU] = BaiduAdaptor()
ADAPTORS[ChannelType.ZHIPU] = ZhipuAdaptor()
ADAPTORS[ChannelType.VERTEX_AI] = VertexAIAdaptor()
ADAPTORS[ChannelType.PALM] = PaLMAdaptor()
ADAPTORS[ChannelType.OLLAMA] = OllamaAdaptor()
ADAPTORS[ChannelType.COHERE] = CohereAdaptor()
ADAPTORS[ChannelType.AWS_CLAUDE] = AwsAdaptor()
ADAPTORS[ChannelType.COZE] = CozeAdaptor()
ADAPTORS[ChannelType.CLOUDFLARE] = CloudflareAdaptor()
ADAPTORS[ChannelType.DEEPL] = DeepLAdaptor()
ADAPTORS[ChannelType.REPLICATE] = ReplicateAdaptor()
ADAPTORS[ChannelType.AIPROXY_LIBRARY] = AIProxyLibraryAdaptor()


class UnsupportedChannelType(RelayError):
    pass


def adaptor_for(channel_type: int) -> Adaptor:
    adaptor = ADAPTORS.get(channel_type)
    if adaptor is not None:
        return adaptor
    name = CHANNEL_TYPE_NAMES.get(channel_type, str(channel_type))
    raise UnsupportedChannelType(
        500, f"channel type {name} ({channel_type}) has no adaptor", code="unsupported_channel"
    )
