from __future__ import annotations

import pytest

from billing.ratio_defaults import (
    DEFAULT_COMPLETION_RATIO,
    DEFAULT_GROUP_RATIO,
    DEFAULT_MODEL_RATIO,
    IMAGE_GENERATION_AMOUNTS,
    IMAGE_PROMPT_LENGTH_LIMITS,
    IMAGE_SIZE_RATIOS,
    MILLI_USD,
    QUOTA_PER_USD,
    RMB,
    UNKNOWN_MODEL_RATIO,
    USD,
    builtin_completion_ratio,
)


def test_units_match_one_api():
    assert QUOTA_PER_USD == 500_000
    assert USD == 500
    assert MILLI_USD == 0.5
    # Go divides the integer constants 500 / 7, which truncates.
    assert RMB == 71
    assert UNKNOWN_MODEL_RATIO == 30


def test_model_ratio_table_size_and_types():
    assert len(DEFAULT_MODEL_RATIO) == 566
    assert all(isinstance(value, float) for value in DEFAULT_MODEL_RATIO.values())


def test_openai_ratios():
    assert DEFAULT_MODEL_RATIO["gpt-4"] == 15
    assert DEFAULT_MODEL_RATIO["gpt-4-32k"] == 30
    assert DEFAULT_MODEL_RATIO["gpt-4-turbo"] == 5
    assert DEFAULT_MODEL_RATIO["gpt-4o"] == 2.5
    assert DEFAULT_MODEL_RATIO["gpt-4o-2024-08-06"] == 1.25
    assert DEFAULT_MODEL_RATIO["gpt-4o-mini"] == 0.075
    assert DEFAULT_MODEL_RATIO["gpt-3.5-turbo"] == 0.25
    assert DEFAULT_MODEL_RATIO["o1"] == 7.5
    assert DEFAULT_MODEL_RATIO["o3-mini"] == 1.5
    assert DEFAULT_MODEL_RATIO["text-embedding-3-small"] == 0.01
    assert DEFAULT_MODEL_RATIO["whisper-1"] == 15
    assert DEFAULT_MODEL_RATIO["tts-1"] == 7.5
    assert DEFAULT_MODEL_RATIO["dall-e-2"] == 10
    assert DEFAULT_MODEL_RATIO["dall-e-3"] == 20


def test_anthropic_and_google_ratios():
    assert DEFAULT_MODEL_RATIO["claude-3-haiku-20240307"] == 0.125
    assert DEFAULT_MODEL_RATIO["claude-3-5-sonnet-20241022"] == 1.5
    assert DEFAULT_MODEL_RATIO["claude-3-opus-20240229"] == 7.5
    assert DEFAULT_MODEL_RATIO["gemini-1.5-pro"] == 0.625
    assert DEFAULT_MODEL_RATIO["gemini-2.0-flash"] == 0.075
    assert DEFAULT_MODEL_RATIO["deepseek-chat"] == 0.07


def test_rmb_priced_ratios_equal_go_constant_arithmetic():
    # Plain Python gives 0.12 * 71 == 8.52 but 0.004 * 71 == 0.28400000000000003; Go gets 0.284.
    assert DEFAULT_MODEL_RATIO["ERNIE-4.0-8K"] == 8.52
    assert DEFAULT_MODEL_RATIO["ERNIE-Speed-8K"] == 0.284
    assert DEFAULT_MODEL_RATIO["glm-4"] == 7.1
    assert DEFAULT_MODEL_RATIO["hunyuan-vision"] == 1.278
    assert DEFAULT_MODEL_RATIO["step-2-16k"] == 0.002698
    assert DEFAULT_MODEL_RATIO["glm-4-flash"] == 0


def test_groq_ratios_are_fixed_to_real_price():
    # $0.59 per 1M tokens -> 0.59 / 2; One API itself stores 0.000295.
    assert DEFAULT_MODEL_RATIO["llama3-70b-8192"] == 0.295
    assert DEFAULT_MODEL_RATIO["llama3-8b-8192"] == 0.025
    assert DEFAULT_MODEL_RATIO["mixtral-8x7b-32768"] == 0.12
    assert DEFAULT_MODEL_RATIO["gemma2-9b-it"] == 0.1


def test_channel_specific_entries():
    assert DEFAULT_MODEL_RATIO["llama3-8b-8192(33)"] == 0.15
    assert DEFAULT_MODEL_RATIO["llama3-70b-8192(33)"] == 1.325


def test_openrouter_and_replicate_entries():
    assert DEFAULT_MODEL_RATIO["openai/gpt-4o"] == 5.0
    assert DEFAULT_MODEL_RATIO["openrouter/auto"] == -500000.0
    assert DEFAULT_MODEL_RATIO["black-forest-labs/flux-schnell"] == 1.5
    assert DEFAULT_MODEL_RATIO["meta/meta-llama-3.1-405b-instruct"] == 4750


def test_default_completion_ratio():
    assert DEFAULT_COMPLETION_RATIO == {
        "llama3-8b-8192(33)": 2.0,
        "llama3-70b-8192(33)": 1.320754716981132,
        "whisper-1": 0,
        "deepseek-chat": 2.0,
        "deepseek-reasoner": 3.981818181818182,
    }


@pytest.mark.parametrize(
    ("model_name", "expected"),
    [
        ("gpt-3.5-turbo", 3),
        ("gpt-3.5-turbo-0125", 3),
        ("gpt-3.5-turbo-1106", 2),
        ("gpt-3.5-turbo-16k", 4 / 3),
        ("gpt-4o", 4),
        ("gpt-4o-mini", 4),
        ("gpt-4o-2024-05-13", 3),
        ("gpt-4-turbo-2024-04-09", 3),
        ("gpt-4-1106-preview", 3),
        ("gpt-4", 2),
        ("gpt-4-32k", 2),
        ("o1-mini", 4),
        ("o3-mini", 1),
        ("chatgpt-4o-latest", 3),
        ("claude-3-5-sonnet-20241022", 5),
        ("claude-2.1", 3),
        ("mistral-large-latest", 3),
        ("open-mistral-7b", 1),
        ("gemini-1.5-pro", 3),
        ("deepseek-chat", 2),
        ("llama3-8b-8192", 2),
        ("llama3-70b-8192", 1.3389830508474576),
        ("llama2-70b-4096", 1.25),
        ("command", 2),
        ("command-r", 3),
        ("command-r-plus", 5),
        ("command-r-internet", 1),
        ("grok-beta", 3),
        ("meta/meta-llama-3-70b-instruct", 4.230769230769231),
        ("ibm-granite/granite-3.0-2b-instruct", 8.333333333333334),
        ("mistralai/mixtral-8x7b-instruct-v0.1", 3.3333333333333335),
        ("qwen-max", 1),
        ("unknown-model", 1),
    ],
)
def test_builtin_completion_ratio(model_name: str, expected: float):
    assert builtin_completion_ratio(model_name) == expected


def test_group_ratio():
    assert DEFAULT_GROUP_RATIO == {"default": 1, "vip": 1, "svip": 1}


def test_image_tables():
    assert IMAGE_SIZE_RATIOS["dall-e-2"] == {"256x256": 1, "512x512": 1.125, "1024x1024": 1.25}
    assert IMAGE_SIZE_RATIOS["dall-e-3"]["1792x1024"] == 2
    assert set(IMAGE_SIZE_RATIOS) == {
        "dall-e-2",
        "dall-e-3",
        "ali-stable-diffusion-xl",
        "ali-stable-diffusion-v1.5",
        "wanx-v1",
        "step-1x-medium",
    }
    assert IMAGE_GENERATION_AMOUNTS["dall-e-2"] == (1, 10)
    assert IMAGE_GENERATION_AMOUNTS["dall-e-3"] == (1, 1)
    assert IMAGE_GENERATION_AMOUNTS["wanx-v1"] == (1, 4)
    assert IMAGE_GENERATION_AMOUNTS["cogview-3"] == (1, 1)
    assert IMAGE_PROMPT_LENGTH_LIMITS["dall-e-2"] == 1000
    assert IMAGE_PROMPT_LENGTH_LIMITS["dall-e-3"] == 4000
    assert IMAGE_PROMPT_LENGTH_LIMITS["cogview-3"] == 833
