"""The fault table: each fault test adds its row; pytest prints the table with its results
and writes it to DATA_DIR/fault-table.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from tests.integration.faults.load import Row

ROWS: list[Row] = []
HEADER = ("fault", "requests", "ok", "errors", "billed", "lost records")


def table(rows: list[Row]) -> str:
    cells = [HEADER] + [
        (row.fault, str(row.requests), str(row.ok), str(row.errors), str(row.billed), str(row.lost))
        for row in rows
    ]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]

    def line(values: tuple[str, ...]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    text = [line(cells[0]), rule, *(line(values) for values in cells[1:])]
    notes = [f"- {row.fault}: {note}" for row in rows for note in row.notes]
    return "\n".join(text + ([""] + notes if notes else [])) + "\n"


@pytest.fixture
def fault_table() -> list[Row]:
    return ROWS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not ROWS:
        return
    text = table(sorted(ROWS, key=lambda row: row.fault))
    terminalreporter.section("fault table")
    terminalreporter.write(text)
    path = Path(settings.DATA_DIR) / "fault-table.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Faults under load\n\n" + text)
