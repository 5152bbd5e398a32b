"""Secrets handed to users: API keys, redemption codes, access tokens, invite codes."""

from __future__ import annotations

import secrets
import string
import uuid

_ALPHANUMERIC = string.ascii_letters + string.digits
API_KEY_LENGTH = 48  # stored without the `sk-` prefix clients send


def random_string(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def new_api_key() -> str:
    """48 characters from the CSPRNG (One API mixes in a UUID; all of ours are random)."""
    return random_string(API_KEY_LENGTH)


def new_redemption_code() -> str:
    return uuid.uuid4().hex  # 32 characters, as One API


def new_access_token() -> str:
    return uuid.uuid4().hex


def new_aff_code() -> str:
    return random_string(4)
