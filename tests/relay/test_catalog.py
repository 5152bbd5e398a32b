from __future__ import annotations

import json

from relay.catalog import (
    ANTHROPIC_MODELS,
    CHANNEL_TYPE_NAMES,
    COHERE_MODELS,
    DEFAULT_BASE_URLS,
    MODEL_CATALOG,
    MODEL_OWNERS,
    MODELS_BY_CHANNEL_TYPE,
    OPENAI_MODELS,
    ChannelType,
)

# Types whose base URL the user supplies, or whose adaptor needs none (websocket, AWS SDK,
# Vertex AI regional endpoints).
TYPES_WITHOUT_DEFAULT_BASE_URL = {3, 8, 18, 33, 42, 43, 50}


def test_channel_type_constants():
    assert ChannelType.UNKNOWN == 0
    assert ChannelType.OPENAI == 1
    assert ChannelType.API2D == 2
    assert ChannelType.AZURE == 3
    assert ChannelType.ANTHROPIC == 14
    assert ChannelType.GEMINI == 24
    assert ChannelType.AWS_CLAUDE == 33
    assert ChannelType.DEEPSEEK == 36
    assert ChannelType.VERTEX_AI == 42
    assert ChannelType.PROXY == 43
    assert ChannelType.OPENAI_COMPATIBLE == 50
    assert ChannelType.GEMINI_OPENAI_COMPATIBLE == 51
    assert ChannelType.DUMMY == 52
    assert [member.value for member in ChannelType] == list(range(53))


def test_every_channel_type_has_a_name():
    assert len(CHANNEL_TYPE_NAMES) == 53
    assert set(CHANNEL_TYPE_NAMES) == set(range(53))
    assert all(CHANNEL_TYPE_NAMES[channel_type] for channel_type in range(1, 52))
    assert CHANNEL_TYPE_NAMES[1] == "OpenAI"
    assert CHANNEL_TYPE_NAMES[3] == "Azure"
    assert CHANNEL_TYPE_NAMES[14] == "Anthropic"
    assert CHANNEL_TYPE_NAMES[33] == "AWS"
    assert CHANNEL_TYPE_NAMES[50] == "OpenAI 兼容"
    assert all(type(channel_type) is int for channel_type in CHANNEL_TYPE_NAMES)


def test_base_urls():
    assert set(DEFAULT_BASE_URLS) == set(range(52))
    for channel_type in range(1, 52):
        base_url = DEFAULT_BASE_URLS[channel_type]
        if channel_type in TYPES_WITHOUT_DEFAULT_BASE_URL:
            assert base_url == "", channel_type
        else:
            assert base_url.startswith(("https://", "http://")), channel_type
    assert DEFAULT_BASE_URLS[1] == "https://api.openai.com"
    assert DEFAULT_BASE_URLS[20] == "https://openrouter.ai/api"
    assert DEFAULT_BASE_URLS[29] == "https://api.groq.com/openai"
    assert DEFAULT_BASE_URLS[30] == "http://localhost:11434"
    assert DEFAULT_BASE_URLS[46] == "https://api.replicate.com/v1/models/"
    assert DEFAULT_BASE_URLS[51] == "https://generativelanguage.googleapis.com/v1beta/openai/"


def test_models_by_channel_type_covers_real_types():
    assert set(MODELS_BY_CHANNEL_TYPE) == set(range(1, 52))
    json.dumps(MODELS_BY_CHANNEL_TYPE)  # served as-is by GET /api/models


def test_models_by_channel_type_lists():
    assert MODELS_BY_CHANNEL_TYPE[1] == list(OPENAI_MODELS)
    assert len(OPENAI_MODELS) == 53
    assert MODELS_BY_CHANNEL_TYPE[3] == list(OPENAI_MODELS)  # Azure
    assert MODELS_BY_CHANNEL_TYPE[21] == list(OPENAI_MODELS)  # AI Proxy knowledge base
    assert MODELS_BY_CHANNEL_TYPE[50] == list(OPENAI_MODELS)
    assert MODELS_BY_CHANNEL_TYPE[14] == list(ANTHROPIC_MODELS)
    assert MODELS_BY_CHANNEL_TYPE[11] == ["PaLM-2"]
    assert MODELS_BY_CHANNEL_TYPE[36] == ["deepseek-chat", "deepseek-reasoner"]
    assert MODELS_BY_CHANNEL_TYPE[24] == MODELS_BY_CHANNEL_TYPE[51]
    assert "gemini-2.0-flash" in MODELS_BY_CHANNEL_TYPE[24]
    assert MODELS_BY_CHANNEL_TYPE[34] == []  # Coze
    assert MODELS_BY_CHANNEL_TYPE[43] == []  # Proxy
    assert MODELS_BY_CHANNEL_TYPE[33][-2:] == ["llama3-8b-8192", "llama3-70b-8192"]
    assert len(MODELS_BY_CHANNEL_TYPE[33]) == 12
    assert "claude-3-5-sonnet-v2@20241022" in MODELS_BY_CHANNEL_TYPE[42]
    assert "gemini-1.5-pro-002" in MODELS_BY_CHANNEL_TYPE[42]
    assert len(MODELS_BY_CHANNEL_TYPE[20]) == 231  # OpenRouter
    assert "llama3-70b-8192" in MODELS_BY_CHANNEL_TYPE[29]
    assert MODELS_BY_CHANNEL_TYPE[49][:2] == ["qwen-turbo", "qwen-plus"]


def test_models_by_channel_type_are_independent_copies():
    MODELS_BY_CHANNEL_TYPE[2].append("local-change")
    try:
        assert "local-change" not in MODELS_BY_CHANNEL_TYPE[1]
    finally:
        MODELS_BY_CHANNEL_TYPE[2].pop()


def test_cohere_lists_internet_variants():
    assert COHERE_MODELS[:2] == ("command", "command-nightly")
    assert COHERE_MODELS[6:] == tuple(f"{name}-internet" for name in COHERE_MODELS[:6])


def test_model_owners():
    assert MODEL_OWNERS["gpt-4o"] == "openai"
    assert MODEL_OWNERS["claude-3-haiku-20240307"] == "anthropic"
    assert MODEL_OWNERS["PaLM-2"] == "google palm"
    assert MODEL_OWNERS["gemini-1.5-pro"] == "google gemini"
    assert MODEL_OWNERS["ERNIE-4.0-8K"] == "baidu"
    assert MODEL_OWNERS["glm-4"] == "zhipu"
    assert MODEL_OWNERS["qwen-max"] == "ali"
    assert MODEL_OWNERS["command-r-internet"] == "Cohere"
    assert MODEL_OWNERS["claude-3-opus@20240229"] == "vertexai"
    assert MODEL_OWNERS["black-forest-labs/flux-schnell"] == "replicate"
    assert MODEL_OWNERS["360GPT_S2_V9"] == "360"
    assert MODEL_OWNERS["mistral-large-latest"] == "mistralai"
    assert MODEL_OWNERS["deepseek-reasoner"] == "deepseek"
    assert MODEL_OWNERS["meta-llama/Llama-3-70b-chat-hf"] == "together.ai"
    assert MODEL_OWNERS["grok-2"] == "xai"
    assert MODEL_OWNERS["ernie-4.0-8k"] == "baiduv2"


def test_model_owner_is_first_adaptor_listing_the_model():
    assert MODEL_OWNERS["llama3-8b-8192"] == "aws"  # before groq
    assert MODEL_OWNERS["gemini-pro"] == "google gemini"  # before vertexai
    assert MODEL_OWNERS["deepseek-r1"] == "ali"  # before baiduv2
    assert ("llama3-8b-8192", "groq") in MODEL_CATALOG


def test_catalog_skips_lists_one_api_leaves_out():
    # OpenRouter, Ali Bailian and Gemini (OpenAI) are not in One API's catalog: "custom".
    assert "openrouter/auto" not in MODEL_OWNERS
    assert "qwen-long" not in MODEL_OWNERS
    assert "azure" not in set(MODEL_OWNERS.values())
    assert "proxy" not in set(MODEL_OWNERS.values())
    assert len(MODEL_CATALOG) == 492
    assert len(MODEL_OWNERS) == 471
