from __future__ import annotations

import hashlib
import logging
import socket

import pytest

from relay import tokens
from relay.tokens import (
    CL100K_SHA256,
    bundled_cl100k_path,
    cl100k_base,
    count_text_tokens,
    encoding_for_model,
    o200k_base,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello world", 2),
        ("Hello, world!", 4),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("tiktoken is great!", 6),
        ("你好，世界", 6),
        # Special tokens are counted as plain text, not rejected.
        ("<|endoftext|>", 7),
    ],
)
def test_cl100k_counts(text, expected):
    assert count_text_tokens(text, "gpt-3.5-turbo") == expected
    assert count_text_tokens(text, "gpt-4") == expected


def test_empty_string_is_zero():
    assert count_text_tokens("", "gpt-3.5-turbo") == 0
    assert count_text_tokens("", "gpt-4o") == 0


def test_known_token_ids():
    assert cl100k_base().encode("hello world") == [15339, 1917]


def test_bundled_file_hash():
    path = bundled_cl100k_path()
    assert path.is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CL100K_SHA256


def test_bad_bundled_file_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "cl100k_base.tiktoken"
    fake.write_bytes(b"aGVsbG8= 0\n")
    monkeypatch.setattr(tokens, "bundled_cl100k_path", lambda: fake)
    cl100k_base.cache_clear()
    try:
        with pytest.raises(tokens.TokenizerFileError):
            cl100k_base()
    finally:
        cl100k_base.cache_clear()


def test_gpt4o_falls_back_to_cl100k_with_warning(settings, caplog, tmp_path):
    settings.TIKTOKEN_CACHE_DIR = str(tmp_path)  # exists, but holds no o200k_base.tiktoken
    o200k_base.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="relay.tokens"):
            encoding = encoding_for_model("gpt-4o")
        assert encoding is cl100k_base()
        assert count_text_tokens("hello world", "gpt-4o-mini") == 2
        warnings = [r for r in caplog.records if r.name == "relay.tokens"]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert "o200k_base.tiktoken not found" in warnings[0].getMessage()
    finally:
        o200k_base.cache_clear()


def test_gpt4o_fallback_with_empty_cache_dir(settings, caplog):
    settings.TIKTOKEN_CACHE_DIR = ""
    o200k_base.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="relay.tokens"):
            assert encoding_for_model("gpt-4o").name == "cl100k_base"
        assert "TIKTOKEN_CACHE_DIR=''" in caplog.text
    finally:
        o200k_base.cache_clear()


@pytest.mark.parametrize(
    ("model", "name"),
    [
        ("gpt-3.5-turbo", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("text-embedding-3", "cl100k_base"),
    ],
)
def test_cl100k_models(model, name):
    assert encoding_for_model(model).name == name


def test_no_network(monkeypatch, settings):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    settings.TIKTOKEN_CACHE_DIR = ""
    with (
        socket.socket() as sock,
        pytest.raises(AssertionError, match="network access attempted"),
    ):
        sock.connect(("127.0.0.1", 9))
    cl100k_base.cache_clear()
    o200k_base.cache_clear()
    try:
        encoding = cl100k_base()
        assert encoding.encode("hello world") == [15339, 1917]
        assert count_text_tokens("hello world", "gpt-4o") == 2
    finally:
        cl100k_base.cache_clear()
        o200k_base.cache_clear()
