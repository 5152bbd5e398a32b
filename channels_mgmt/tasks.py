"""Celery tasks: the all-channel test and the balance refresh, started from the admin API
(and from beat when a schedule names them)."""

from __future__ import annotations

import dataclasses
from typing import Any

from channels_mgmt import balance, testing
from oneapi.celery import app


@app.task(name="channels_mgmt.test_all_channels")
def test_all_channels_task(scope: str = "all") -> dict[str, Any]:
    try:
        summary = testing.test_all_channels(scope)
    except testing.TestsAlreadyRunning as error:
        # Another run is under way: this one has nothing to add.
        return {"skipped": str(error)}
    return dataclasses.asdict(summary)


test_all_channels_task.__test__ = False  # type: ignore[attr-defined]


@app.task(name="channels_mgmt.update_all_balances")
def update_all_balances_task() -> dict[str, Any]:
    return dataclasses.asdict(balance.update_all_balances())
