"""Log retention: consume logs older than LOG_RETENTION_DAYS days are deleted.

One API has no such setting (its admin deletes old logs by hand); 0, the default, keeps every
log. Top-up, management, system and test logs are never touched here.
"""

from __future__ import annotations

import time

from django.conf import settings
from django.db import router, transaction

from billing.models import Log, LogType
from oneapi.env import env_int

BATCH_SIZE = 1000
DAY_SECONDS = 24 * 3600


def retention_days() -> int:
    """`settings.LOG_RETENTION_DAYS`, or the environment variable when settings lack it."""
    days = getattr(settings, "LOG_RETENTION_DAYS", None)
    if days is None:
        days = env_int("LOG_RETENTION_DAYS", 0, minimum=0)
    return max(int(days), 0)


def prune_consume_logs(
    days: int | None = None, *, now: float | None = None, batch_size: int = BATCH_SIZE
) -> int:
    """Delete consume logs created more than `days` days ago; returns how many went.

    Each batch is its own short transaction, so a large table is never locked for long and
    the relay's log writes go on in between."""
    days = retention_days() if days is None else days
    if days <= 0:
        return 0
    cutoff = int(time.time() if now is None else now) - days * DAY_SECONDS
    database = router.db_for_write(Log)
    old = Log.objects.using(database).filter(type=LogType.CONSUME, created_at__lt=cutoff)
    total = 0
    while True:
        with transaction.atomic(using=database):
            # Ids first: MySQL cannot DELETE with a LIMIT in a subquery.
            ids = list(old.values_list("pk", flat=True)[:batch_size])
            if not ids:
                return total
            deleted, _ = Log.objects.using(database).filter(pk__in=ids).delete()
        total += deleted
