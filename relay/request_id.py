"""Request ids in One API's form: the local time to the second, then 8 digits.

The 8 digits count up from a random start instead of being drawn afresh: drawn at random, two
requests of one process in the same second collided about once a minute at 1,000 requests/s
(the birthday bound), and the consume log's unique `request_id` then lost one of them.
"""

from __future__ import annotations

import itertools
import secrets
import time

_SPAN = 10**8
_sequence = itertools.count(secrets.randbelow(_SPAN))  # next() is atomic under the GIL
_second = -1
_prefix = ""


def new_request_id() -> str:
    global _second, _prefix
    now = int(time.time())
    if now != _second:  # formatting the time costs more than the rest; once a second
        _prefix = time.strftime("%Y%m%d%H%M%S", time.localtime(now))
        _second = now
    return f"{_prefix}{next(_sequence) % _SPAN:08d}"
