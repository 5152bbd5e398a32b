"""Request ids in One API's form: the local time to the second, then 8 random digits."""

from __future__ import annotations

import secrets
import time


def new_request_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + f"{secrets.randbelow(10**8):08d}"
