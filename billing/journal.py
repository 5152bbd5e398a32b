"""The usage journal: settled charges made durable before the client gets its last byte.

The relay appends one JSON line per finished request to this process's journal file (one
`write` of a few hundred bytes: it survives a crash of the process, and costs microseconds
instead of a database transaction on the response path). `apply_journal` later writes a
batch to the database: consumption logs, then in one transaction the quota and counter
deltas together with the journal's new offset in `journal_marks`. So every line is applied
exactly once, even when a dead process's journal is replayed by someone else.

Each live journal holds an exclusive `flock`; a journal whose lock can be taken belongs to
a process that is gone, and `recover_orphaned_journals` applies and removes it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from django.db import transaction
from django.db.models import F

from accounts.models import User
from billing.ledger import Ledger
from billing.log_insert import insert_logs
from billing.models import ApiKey, JournalMark, LogType
from channels_mgmt.models import Channel

logger = logging.getLogger(__name__)

SUFFIX = ".jsonl"


@dataclass(frozen=True)
class UsageRecord:
    request_id: str
    user_id: int
    key_id: int
    key_is_limited: bool
    channel_id: int
    quota: int
    log: dict[str, Any] | None = field(default=None)  # Log fields, or None when logging is off


class Journal:
    """This process's append-only journal file, locked for as long as the process lives."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}{SUFFIX}"
        self.path = directory / name
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def append(self, record: UsageRecord) -> None:
        # One write call per line: after a crash the file holds whole lines and at most one
        # torn last line, which readers skip until it is complete.
        os.write(self._fd, orjson.dumps(record) + b"\n")  # orjson encodes dataclasses natively

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class AppliedBatch:
    records: int = 0
    user_charges: dict[int, int] = field(default_factory=dict)
    key_charges: dict[int, int] = field(default_factory=dict)
    logs: list[dict[str, Any]] = field(default_factory=list)  # the Log fields written
    marked: bool = False  # `before_commit` ran: the shared ledger expects `applied`/`aborted`
    end_offset: int = 0  # the journal offset this batch brings the ledger up to


def _read_complete_lines(
    path: Path, offset: int, end: int | None = None
) -> tuple[list[UsageRecord], int]:
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read() if end is None else handle.read(end - offset)
    end = data.rfind(b"\n") + 1
    records = [UsageRecord(**orjson.loads(line)) for line in data[:end].splitlines() if line]
    return records, offset + end


def apply_journal(
    path: Path,
    before_commit: Callable[[AppliedBatch], None] | None = None,
    reported_offset: int | None = None,
) -> AppliedBatch:
    """Apply the lines of `path` not applied yet; safe to call concurrently and repeatedly.

    `before_commit` sees the batch's charges inside the transaction (the shared ledger marks
    those balances there); if it ran and the commit then fails, the exception carries the
    batch as `error.uncommitted`.

    `reported_offset` is how far the caller's ledger has been told of applied charges. A
    commit whose answer was lost (the connection dropped after the server committed) looks
    failed to the caller but moved the mark: the lines between the two offsets are then
    added to this batch's charges (not applied again), so the ledger stops counting them.
    """
    batch = AppliedBatch()
    try:
        _apply_in_transaction(path, batch, before_commit, reported_offset)
    except Exception as error:
        if batch.marked:
            error.uncommitted = batch  # type: ignore[attr-defined]
        raise
    return batch


def _apply_in_transaction(
    path: Path,
    batch: AppliedBatch,
    before_commit: Callable[[AppliedBatch], None] | None,
    reported_offset: int | None,
) -> None:
    with transaction.atomic():
        mark, _ = JournalMark.objects.select_for_update().get_or_create(journal=path.name)
        in_doubt: list[UsageRecord] = []
        if reported_offset is not None and reported_offset < mark.offset:
            in_doubt, _ = _read_complete_lines(path, reported_offset, end=mark.offset)
        records, new_offset = _read_complete_lines(path, mark.offset)
        batch.end_offset = new_offset
        if not records and not in_doubt:
            return
        # Logs first: request_id is unique, so a replay after a crash between the two steps
        # (possible when logs live in their own database) cannot write a log twice.
        insert_logs(record.log for record in records if record.log is not None)
        _apply_charges(records, batch)
        if in_doubt:
            _add_charges(in_doubt, batch)
        mark.offset = new_offset
        mark.save(update_fields=["offset", "updated_at"])
        batch.records = len(in_doubt) + len(records)
        batch.logs = [record.log for record in in_doubt + records if record.log is not None]
        if before_commit is not None:
            batch.marked = True
            before_commit(batch)


def _apply_charges(records: list[UsageRecord], batch: AppliedBatch) -> None:
    """Requires an open transaction. Rows are updated in id order so that two flushers never
    wait on each other's locks in opposite orders (no deadlock)."""
    user_quota: dict[int, int] = defaultdict(int)
    user_requests: dict[int, int] = defaultdict(int)
    key_quota: dict[int, int] = defaultdict(int)
    key_limited: dict[int, bool] = {}
    key_requests: dict[int, int] = defaultdict(int)
    channel_quota: dict[int, int] = defaultdict(int)
    channel_requests: dict[int, int] = defaultdict(int)
    for record in records:
        user_quota[record.user_id] += record.quota
        user_requests[record.user_id] += 1
        key_quota[record.key_id] += record.quota
        key_requests[record.key_id] += 1
        key_limited[record.key_id] = record.key_is_limited
        if record.channel_id:
            channel_quota[record.channel_id] += record.quota
            channel_requests[record.channel_id] += 1
    for user_id in sorted(user_quota):
        User.objects.filter(pk=user_id).update(
            quota=F("quota") - user_quota[user_id],
            used_quota=F("used_quota") + user_quota[user_id],
            request_count=F("request_count") + user_requests[user_id],
        )
    for key_id in sorted(key_quota):
        changes: dict[str, Any] = {
            "used_quota": F("used_quota") + key_quota[key_id],
            "request_count": F("request_count") + key_requests[key_id],
            "accessed_time": int(time.time()),
        }
        if key_limited[key_id]:
            changes["remain_quota"] = F("remain_quota") - key_quota[key_id]
        ApiKey.objects.filter(pk=key_id).update(**changes)
    for channel_id in sorted(channel_quota):
        Channel.objects.filter(pk=channel_id).update(
            used_quota=F("used_quota") + channel_quota[channel_id],
            request_count=F("request_count") + channel_requests[channel_id],
        )
    batch.user_charges = dict(user_quota)
    batch.key_charges = {k: v for k, v in key_quota.items() if key_limited[k]}


def _add_charges(records: list[UsageRecord], batch: AppliedBatch) -> None:
    """Count charges already in the database into the batch (for the ledger only)."""
    for record in records:
        batch.user_charges[record.user_id] = (
            batch.user_charges.get(record.user_id, 0) + record.quota
        )
        if record.key_is_limited:
            batch.key_charges[record.key_id] = (
                batch.key_charges.get(record.key_id, 0) + record.quota
            )


def is_orphaned(path: Path) -> bool:
    """True when no live process holds the journal's lock."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def forget_journal(path: Path) -> None:
    """Remove a fully applied journal and its mark (a clean shutdown)."""
    with transaction.atomic():
        JournalMark.objects.filter(journal=path.name).delete()
        path.unlink(missing_ok=True)


def recover_orphaned_journals(directory: Path, ledger: Ledger | None = None) -> int:
    """Apply and delete the journals of dead processes; returns how many records it applied.
    With a (shared) ledger, their charges also leave the dead writer's pending there."""
    if not directory.is_dir():
        return 0
    applied = 0
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if not is_orphaned(path):
            continue
        batch = apply_journal_of(path, ledger, writer=path.name)
        applied += batch.records
        forget_journal(path)
        if ledger is not None:
            ledger.forget_writer(path.name, batch.user_charges, batch.key_charges)
        logger.info("recovered usage journal %s", path.name)
    return applied


def apply_journal_of(
    path: Path,
    ledger: Ledger | None,
    writer: str | None = None,
    reported_offset: int | None = None,
) -> AppliedBatch:
    """`apply_journal`, keeping `ledger` in step: marked before the commit, then `applied`
    (or `aborted` when the commit failed). `writer` None means the ledger's own journal."""
    if ledger is None:
        return apply_journal(path, reported_offset=reported_offset)

    def mark(batch: AppliedBatch) -> None:
        ledger.applying(batch.user_charges, batch.key_charges)

    try:
        batch = apply_journal(path, before_commit=mark, reported_offset=reported_offset)
    except Exception as error:
        uncommitted = getattr(error, "uncommitted", None)
        if uncommitted is not None:
            ledger.aborted(uncommitted.user_charges, uncommitted.key_charges)
        raise
    if batch.records:
        ledger.applied(batch.user_charges, batch.key_charges, writer=writer)
    return batch


def consume_log_fields(
    *,
    user_id: int,
    username: str,
    token_name: str,
    model_name: str,
    quota: int,
    prompt_tokens: int,
    completion_tokens: int,
    channel_id: int,
    request_id: str,
    elapsed_ms: int,
    is_stream: bool,
    content: str,
    system_prompt_reset: bool = False,
) -> dict[str, Any]:
    """The fields of one consume log, ready for the journal."""
    return {
        "user_id": user_id,
        "created_at": int(time.time()),
        "type": int(LogType.CONSUME),
        "content": content,
        "username": username,
        "token_name": token_name,
        "model_name": model_name,
        "quota": quota,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "channel_id": channel_id,
        "request_id": request_id,
        "elapsed_time": elapsed_ms,
        "is_stream": is_stream,
        "system_prompt_reset": system_prompt_reset,
    }
