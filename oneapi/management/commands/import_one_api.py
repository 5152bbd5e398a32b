from __future__ import annotations

import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from oneapi.importer import TABLES, ImportFailed, Report, Source, open_source, run_import

_ROW = "  {:<12} {:>8} {:>8} {:>10}  {}"


class Command(BaseCommand):
    help = (
        "Import users, tokens, channels, redemptions, options and logs from a One API "
        "database. SOURCE is a SQLite file or One API's SQL_DSN (user:pass@tcp(host:port)/db "
        "or postgres://...). Safe to run again: rows are matched by id (tokens and options by "
        "key) and updated in place."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", help="One API's SQLite file or SQL_DSN")
        parser.add_argument(
            "--log-source",
            help="One API's LOG_SQL_DSN, when its logs were kept in a separate database",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="print what would change; write nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with contextlib.ExitStack() as stack:
            try:
                source = self._open(options["source"], stack)
                log_source = (
                    self._open(options["log_source"], stack) if options["log_source"] else None
                )
                report = run_import(source, log_source=log_source, dry_run=options["dry_run"])
            except ImportFailed as exc:
                raise CommandError(str(exc)) from exc
        self._print(report)

    def _open(self, source: str, stack: contextlib.ExitStack) -> Source:
        opened = open_source(source)
        stack.callback(opened.close)
        return opened

    def _print(self, report: Report) -> None:
        self.stdout.write("Dry run, nothing written:" if report.dry_run else "Imported:")
        self.stdout.write(_ROW.format("table", "created", "updated", "unchanged", ""))
        for table in TABLES:
            counts = report.counts[table]
            other = [
                f"{n} {label}"
                for n, label in ((counts.skipped, "skipped"), (counts.deleted, "deleted"))
                if n
            ]
            self.stdout.write(
                _ROW.format(
                    table, counts.created, counts.updated, counts.unchanged, ", ".join(other)
                )
            )
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
