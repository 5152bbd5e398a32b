"""New logs, announced on the channel layer as the write-back applies them, for the console's
live log view (`dashboard.consumers.LogFollowConsumer`).

The write-back runs in a thread of its own, and the channel layer is asyncio code:

- The in-memory layer (no Redis) is one process's queues, owned by the server's event loop;
  waking a waiting consumer from another thread is not thread-safe. So the message is sent
  on the server's loop (`run_coroutine_threadsafe`), which the first consumer records with
  `bind_server_loop`. No consumer yet in this process means no listener: nothing is sent.
- The Redis layer reaches every node; its connections belong to the loop that made them, so
  one long-lived loop in a daemon thread of this module sends for the whole process.

Publishing never blocks the write-back and never raises into it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

ALL_LOGS_GROUP = "dashboard.logs.all"
MESSAGE_TYPE = "logs.new"  # handled by the consumers' `logs_new`
# What a live row needs; `content` may be long (test and error logs), so it is cut.
FIELDS = (
    "user_id",
    "created_at",
    "type",
    "content",
    "username",
    "token_name",
    "model_name",
    "quota",
    "prompt_tokens",
    "completion_tokens",
    "channel_id",
    "elapsed_time",
    "is_stream",
)
CONTENT_MAX = 500

_server_loop: asyncio.AbstractEventLoop | None = None
_sender_loop: asyncio.AbstractEventLoop | None = None
_sender_lock = threading.Lock()


def user_group(user_id: int) -> str:
    return f"dashboard.logs.user.{user_id}"


def bind_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called by consumers, on the server's loop: where in-memory messages must be sent."""
    global _server_loop
    _server_loop = loop


def _sender() -> asyncio.AbstractEventLoop:
    global _sender_loop
    with _sender_lock:
        if _sender_loop is None or _sender_loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="oneapi-log-stream", daemon=True).start()
            _sender_loop = loop
        return _sender_loop


def message_logs(logs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for log in logs:
        row = {name: log.get(name) for name in FIELDS}
        row["content"] = str(row["content"] or "")[:CONTENT_MAX]
        rows.append(row)
    return rows


async def send_logs(layer: Any, rows: list[dict[str, Any]]) -> None:
    """One message to the all-logs group, and one per user to that user's group."""
    await layer.group_send(ALL_LOGS_GROUP, {"type": MESSAGE_TYPE, "logs": rows})
    by_user: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_user.setdefault(int(row["user_id"] or 0), []).append(row)
    for user_id, own in by_user.items():
        if user_id:
            await layer.group_send(user_group(user_id), {"type": MESSAGE_TYPE, "logs": own})


def _report(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        logger.warning("new logs not announced to live viewers: %s", error)


def publish_logs(logs: Iterable[dict[str, Any]]) -> Future[None] | None:
    """Announce logs just written; returns the pending send (tests wait on it), or None."""
    rows = message_logs(logs)
    layer = get_channel_layer()
    if not rows or layer is None:
        return None
    try:
        if isinstance(layer, InMemoryChannelLayer):
            loop = _server_loop
            if loop is None or loop.is_closed():
                return None  # no consumer in this process: nobody could receive it
        else:
            loop = _sender()
        future = asyncio.run_coroutine_threadsafe(send_logs(layer, rows), loop)
    except Exception:
        logger.exception("new logs not announced to live viewers")
        return None
    future.add_done_callback(_report)
    return future
