"""Automatic channel disabling on upstream errors (One API's `monitor` rules, facts §3.6)."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import sync_to_async

from channels_mgmt.models import ChannelStatus
from channels_mgmt.services import set_channel_status
from oneapi.options import OptionSnapshot
from relay.errors import RelayError

logger = logging.getLogger(__name__)

DISABLING_TYPES = frozenset(
    {"insufficient_quota", "authentication_error", "permission_error", "forbidden"}
)
DISABLING_CODES = frozenset({"invalid_api_key", "account_deactivated"})
DISABLING_PHRASES = (
    "your access was terminated",
    "violation of our policies",
    "your credit balance is too low",
    "organization has been disabled",
    "credit",
    "balance",
    "permission denied",
    "organization has been restricted",
    "api key not valid",
    "api key expired",
    "已欠费",
)

_pending: set[asyncio.Task[None]] = set()


def should_disable(error: RelayError) -> bool:
    if error.status == 401:
        return True
    if error.type in DISABLING_TYPES or str(error.code or "") in DISABLING_CODES:
        return True
    message = error.message.lower()
    return any(phrase in message for phrase in DISABLING_PHRASES)


def _disable(channel_id: int, channel_name: str, reason: str) -> None:
    if set_channel_status(channel_id, ChannelStatus.AUTO_DISABLED):
        logger.warning(
            "channel #%s (%s) disabled automatically: %s", channel_id, channel_name, reason
        )


def report_failure(
    options: OptionSnapshot, channel_id: int, channel_name: str, error: RelayError
) -> None:
    """Disable the channel off the response path when the error says its account is dead.

    The write invalidates the routing table here at once and in every other process within
    a poll interval, so no node keeps routing to it until the next full sync."""
    if not options.get_bool("AutomaticDisableChannelEnabled") or not should_disable(error):
        return
    task = asyncio.ensure_future(
        sync_to_async(_disable, thread_sensitive=True)(channel_id, channel_name, error.message)
    )
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def drain() -> None:
    """Wait for the disabling writes in flight (tests and graceful shutdown)."""
    while _pending:
        await asyncio.gather(*list(_pending), return_exceptions=True)
