from __future__ import annotations

import re

from relay.request_id import new_request_id


def test_ids_have_one_apis_form_and_never_repeat_within_a_process() -> None:
    # when
    ids = [new_request_id() for _ in range(50_000)]

    # then
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"\d{22}", request_id) for request_id in ids)
