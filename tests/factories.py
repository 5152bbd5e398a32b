"""Model factories as plain functions with keyword defaults."""

from __future__ import annotations

import itertools
from typing import Any

from accounts.models import User
from channels_mgmt.models import Channel
from channels_mgmt.services import create_channels

_counter = itertools.count(1)


def make_user(**fields: Any) -> User:
    username = fields.pop("username", f"user{next(_counter)}")
    password = fields.pop("password", "password123")
    return User.objects.create_user(username, password, **fields)


def make_channel(**fields: Any) -> Channel:
    defaults: dict[str, Any] = {
        "type": 1,
        "name": f"channel {next(_counter)}",
        "key": "sk-upstream",
        "models": "gpt-3.5-turbo",
        "group": "default",
    }
    return create_channels({**defaults, **fields})[0]
