"""Channel choice, retries and failover, and turning a finished attempt into a charge.

Every request type (text, images, audio) hands `run_attempts` a function that tries one
channel. A failed channel is excluded for the rest of the request (One API excludes only
the last one), so retries move across the tier and then down the priorities.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from billing import pricing
from billing.journal import UsageRecord, consume_log_fields
from billing.ledger import BalancesMissing, MustWait, Reservation
from channels_mgmt.selection import ChannelInfo, pick_channel
from relay import monitor, ratelimit
from relay.adaptors import Adaptor, UnsupportedChannelType, adaptor_for
from relay.caller import Caller
from relay.errors import RelayError
from relay.failures import UpstreamFailure, final_error
from relay.http import Response, StreamResponse
from relay.transport import read_body, send_upstream

__all__ = ["read_body", "send_upstream"]  # re-exported: the relay's modules import them here

logger = logging.getLogger(__name__)

AttemptFn = Callable[[ChannelInfo], Awaitable[Response | StreamResponse]]
# How long a request may wait for the concurrency gate of a nearly spent balance.
GATE_WAIT_SECONDS = 60.0
# A balance reload races write-backs on other nodes; it is retried this many times.
MAX_BALANCE_RELOADS = 8


def no_channel_error(group: str, model: str) -> RelayError:
    return RelayError(503, f"当前分组 {group} 下对于模型 {model} 无可用渠道")


def forced_channel(caller: Caller) -> ChannelInfo:
    """The `sk-KEY-<id>` channel: group and model checks are skipped, as in One API."""
    try:
        channel_id = int(caller.forced_channel_id or "")
    except ValueError:
        raise RelayError(400, "无效的渠道 Id") from None
    channel = caller.table.channels.get(channel_id)
    if channel is None:
        raise RelayError(400, "无效的渠道 Id")
    if not channel.is_enabled:
        raise RelayError(403, "该渠道已被禁用")
    return channel


async def run_attempts(
    caller: Caller, model: str, attempt: AttemptFn, prompt_tokens: int = 0
) -> Response | StreamResponse:
    """Every relayed request passes here once, whatever its inbound format: the one place its
    rate limits are checked (`prompt_tokens`, the estimate, is checked against TPM) and its
    ticket given back once the response has ended."""
    if caller.rate is None:
        return await _run_attempts(caller, model, attempt)
    return await ratelimit.enforce(
        caller.rate, model, prompt_tokens, lambda: _run_attempts(caller, model, attempt)
    )


async def _run_attempts(
    caller: Caller, model: str, attempt: AttemptFn
) -> Response | StreamResponse:
    if caller.forced_channel_id is not None:
        channel = forced_channel(caller)
        try:
            response = await attempt(channel)
        except UpstreamFailure as failure:
            _note_failure(caller, channel, failure)
            raise final_error(failure.error) from None
        monitor.report_success(caller.options, channel.id, channel.config)
        return response
    retries = max(caller.options.get_int("RetryTimes"), 0)
    failed: set[int] = set()
    last: UpstreamFailure | None = None
    for _ in range(retries + 1):
        channel = pick_channel(caller.table, caller.user.group, model, failed)
        if channel is None:
            break
        try:
            response = await attempt(channel)
        except UpstreamFailure as failure:
            failed.add(channel.id)
            last = failure
            _note_failure(caller, channel, failure)
            if not failure.retryable:
                break
        else:
            monitor.report_success(caller.options, channel.id, channel.config)
            return response
    if last is None:
        raise no_channel_error(caller.user.group, model)
    raise final_error(last.error)


def _note_failure(caller: Caller, channel: ChannelInfo, failure: UpstreamFailure) -> None:
    logger.info(
        "channel #%s failed (status %s): %s",
        channel.id,
        failure.error.status,
        failure.error.message,
    )
    if failure.from_upstream:
        monitor.report_failure(
            caller.options, channel.id, channel.name, failure.error, channel.config
        )


def channel_adaptor(channel: ChannelInfo) -> Adaptor:
    """The channel's adaptor; a type without one fails this channel only (try the next)."""
    try:
        return adaptor_for(channel.type)
    except UnsupportedChannelType as error:
        raise UpstreamFailure(error, retryable=True, from_upstream=False) from None


@dataclass(frozen=True)
class Price:
    model_ratio: float
    group_ratio: float
    completion_ratio: float

    @property
    def ratio(self) -> float:
        return self.model_ratio * self.group_ratio

    @property
    def text(self) -> str:
        return pricing.ratio_text(self.model_ratio, self.group_ratio, self.completion_ratio)


def price(caller: Caller, model: str, channel_type: int) -> Price:
    return Price(
        model_ratio=pricing.model_ratio(model, channel_type, caller.options),
        group_ratio=pricing.group_ratio(caller.user.group, caller.options),
        completion_ratio=pricing.completion_ratio(model, channel_type, caller.options),
    )


async def reserve(caller: Caller, amount: int, estimate: int | None = None) -> Reservation:
    """Take the reservation, waiting while the balance cannot cover this request beside the
    ones in flight (see `billing.ledger`); they finish and settle meanwhile."""
    ledger = caller.runtime.ledger
    deadline: float | None = None
    delay = 0.005
    reloads = 0
    while True:
        try:
            return ledger.reserve(caller.user.id, caller.limited_key_id, amount, estimate)
        except BalancesMissing as missing:
            # The shared ledger lost its copy (Redis restarted): reload it from the database.
            reloads += 1
            if reloads > MAX_BALANCE_RELOADS:
                raise RelayError(
                    503, "额度服务暂不可用，请稍后再试", code="ledger_unavailable"
                ) from None
            await sync_to_async(caller.runtime.reload_balances, thread_sensitive=True)(
                missing.users, missing.keys
            )
            if reloads > 1:
                await asyncio.sleep(0.01 * reloads)
        except MustWait:
            now = time.monotonic()
            deadline = deadline or now + GATE_WAIT_SECONDS
            if now >= deadline:
                raise RelayError(
                    429,
                    "剩余额度不足以同时处理更多请求，请稍后再试",
                    code="quota_concurrency_limit",
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


@dataclass
class Charge:
    """Everything one successful request is billed and logged with."""

    caller: Caller
    channel: ChannelInfo
    model: str
    reservation: Reservation
    request_id: str
    started: float  # time.monotonic() when the request arrived
    is_stream: bool = False
    system_prompt_reset: bool = False

    def settle(self, quota: int, prompt_tokens: int, completion_tokens: int, content: str) -> None:
        caller = self.caller
        if caller.rate is not None:
            caller.rate.add_tokens(prompt_tokens + completion_tokens)  # TPM counts actual use
        log = None
        if caller.options.get_bool("LogConsumeEnabled"):
            log = consume_log_fields(
                user_id=caller.user.id,
                username=caller.user.username,
                token_name=caller.key.name,
                model_name=self.model,
                quota=quota,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                channel_id=self.channel.id,
                request_id=self.request_id,
                elapsed_ms=int((time.monotonic() - self.started) * 1000),
                is_stream=self.is_stream,
                content=content,
                system_prompt_reset=self.system_prompt_reset,
            )
        record = UsageRecord(
            request_id=self.request_id,
            user_id=caller.user.id,
            key_id=caller.key.id,
            key_is_limited=not caller.key.unlimited_quota,
            channel_id=self.channel.id,
            quota=quota,
            log=log,
        )
        caller.runtime.settle(self.reservation, record)

    def release(self) -> None:
        self.caller.runtime.ledger.release(self.reservation)
