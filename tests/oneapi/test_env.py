from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from oneapi.env import env_bool, env_choice, env_float, env_int, env_str

VAR = "ONEAPI_TEST_VARIABLE"


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    monkeypatch.delenv(VAR, raising=False)
    monkeypatch.delenv(f"{VAR}_FILE", raising=False)


# --- env_str ----------------------------------------------------------------------------------


def test_str_default():
    assert env_str(VAR) == ""
    assert env_str(VAR, "fallback") == "fallback"


def test_str_value(monkeypatch):
    monkeypatch.setenv(VAR, " value ")
    assert env_str(VAR, "fallback") == " value "


def test_str_empty_value_is_kept(monkeypatch):
    monkeypatch.setenv(VAR, "")
    assert env_str(VAR, "fallback") == ""


def test_str_file_is_read_and_stripped(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n", encoding="utf-8")
    monkeypatch.setenv(VAR, "from-env")
    monkeypatch.setenv(f"{VAR}_FILE", str(secret))
    assert env_str(VAR, "fallback") == "from-file"


def test_str_unreadable_file(monkeypatch, tmp_path):
    missing = tmp_path / "missing"
    monkeypatch.setenv(f"{VAR}_FILE", str(missing))
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_str(VAR)
    message = str(excinfo.value)
    assert message.startswith(f"{VAR}_FILE: cannot read")
    assert str(missing) in message


def test_str_directory_as_file(monkeypatch, tmp_path):
    monkeypatch.setenv(f"{VAR}_FILE", str(tmp_path))
    with pytest.raises(ImproperlyConfigured, match=f"{VAR}_FILE"):
        env_str(VAR)


# --- env_bool ---------------------------------------------------------------------------------


def test_bool_default():
    assert env_bool(VAR) is False
    assert env_bool(VAR, True) is True


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "True", "yes", "on", " On "])
def test_bool_true(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, False) is True


@pytest.mark.parametrize("raw", ["0", "false", "FALSE", "no", "off", "", "  "])
def test_bool_false(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    assert env_bool(VAR, True) is False


@pytest.mark.parametrize("raw", ["maybe", "2", "y", "enabled"])
def test_bool_bad(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_bool(VAR)
    assert str(excinfo.value) == f"{VAR} must be true or false, got {raw!r}"


# --- env_int ----------------------------------------------------------------------------------


def test_int_default():
    assert env_int(VAR, 7) == 7


@pytest.mark.parametrize("raw", ["", "   "])
def test_int_blank_is_default(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    assert env_int(VAR, 7) == 7


@pytest.mark.parametrize(("raw", "expected"), [("42", 42), (" 42 ", 42), ("-3", -3), ("0", 0)])
def test_int_valid(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)
    assert env_int(VAR, 7) == expected


@pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "0x10"])
def test_int_bad(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int(VAR, 7)
    assert str(excinfo.value) == f"{VAR} must be an integer, got {raw!r}"


def test_int_minimum(monkeypatch):
    monkeypatch.setenv(VAR, "0")
    assert env_int(VAR, 7, minimum=0) == 0
    monkeypatch.setenv(VAR, "-1")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_int(VAR, 7, minimum=0)
    assert str(excinfo.value) == f"{VAR} must be >= 0, got -1"


def test_int_default_is_not_checked_against_minimum():
    assert env_int(VAR, -5, minimum=0) == -5


# --- env_float --------------------------------------------------------------------------------


def test_float_default():
    assert env_float(VAR, 0.8) == 0.8


def test_float_blank_is_default(monkeypatch):
    monkeypatch.setenv(VAR, " ")
    assert env_float(VAR, 0.8) == 0.8


@pytest.mark.parametrize(("raw", "expected"), [("0.5", 0.5), ("1", 1.0), (" 2e-1 ", 0.2)])
def test_float_valid(monkeypatch, raw, expected):
    monkeypatch.setenv(VAR, raw)
    assert env_float(VAR, 0.8) == expected


def test_float_bad(monkeypatch):
    monkeypatch.setenv(VAR, "half")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_float(VAR, 0.8)
    assert str(excinfo.value) == f"{VAR} must be a number, got 'half'"


def test_float_bounds(monkeypatch):
    for raw in ("0", "1", "0.0", "1.0"):
        monkeypatch.setenv(VAR, raw)
        assert env_float(VAR, 0.8, minimum=0.0, maximum=1.0) == float(raw)
    monkeypatch.setenv(VAR, "1.5")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_float(VAR, 0.8, minimum=0.0, maximum=1.0)
    assert str(excinfo.value) == f"{VAR} must be <= 1.0, got 1.5"
    monkeypatch.setenv(VAR, "-0.1")
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_float(VAR, 0.8, minimum=0.0, maximum=1.0)
    assert str(excinfo.value) == f"{VAR} must be >= 0.0, got -0.1"


# --- env_choice -------------------------------------------------------------------------------

CHOICES = ("master", "slave")


def test_choice_default():
    assert env_choice(VAR, "master", CHOICES) == "master"


@pytest.mark.parametrize("raw", ["", "  "])
def test_choice_blank_is_default(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    assert env_choice(VAR, "master", CHOICES) == "master"


def test_choice_valid(monkeypatch):
    monkeypatch.setenv(VAR, " slave ")
    assert env_choice(VAR, "master", CHOICES) == "slave"


@pytest.mark.parametrize("raw", ["boss", "Master", "SLAVE"])
def test_choice_bad(monkeypatch, raw):
    monkeypatch.setenv(VAR, raw)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        env_choice(VAR, "master", CHOICES)
    assert str(excinfo.value) == f"{VAR} must be one of master, slave, got {raw!r}"
