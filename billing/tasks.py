from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from billing.journal import recover_orphaned_journals
from billing.ledger import ledger_for
from billing.periodic_tasks import prune_logs_task, send_quota_alerts_task  # noqa: F401 (registers)
from oneapi.celery import app


@app.task(name="billing.recover_orphaned_journals")
def recover_orphaned_journals_task() -> int:
    """Apply the usage journals of server processes that died without flushing.

    A restarted server does this at startup too; the periodic run covers a process that is
    not restarted (a node scaled down, a worker killed by the OOM killer)."""
    ledger = ledger_for(f"recovery-{os.getpid()}")
    return recover_orphaned_journals(Path(settings.DATA_DIR) / "journal", ledger)
