"""The rate limits' store in Redis, shared by every node (`redis.asyncio`, Lua scripts).

Imported by `relay.ratelimit.store()` only when `REDIS_CONN_STRING` is set.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from relay import ratelimit
from relay.ratelimit import Subject

logger = logging.getLogger(__name__)

# Every check of every subject, then (only if all passed) the counting: one round trip.
# KEYS: per subject its rpm TAT, tpm TAT and slot set (slot -> expiry).
# ARGV: slot, slot ttl ms, requested tokens, then per subject rpm, tpm, concurrency.
CHECK_SCRIPT = """
local WINDOW = 60000000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local slot, ttl, want = ARGV[1], tonumber(ARGV[2]) * 1000, tonumber(ARGV[3])
local out = {1, 0, 0, 0, 0}
local rpm_next = {}
local function ms(us) return math.ceil(us / 1000) end
local function tat_of(key) return math.max(tonumber(redis.call('GET', key) or '0'), now) end
local function refuse(i, kind, used, retry)
  if out[1] == 1 then out[1], out[2], out[3], out[4], out[5] = 0, i, kind, used, retry end
end
local n = #KEYS / 3
for i = 1, n do
  local b = (i - 1) * 3
  local rpm, tpm, conc = tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])
  local rpm_left, rpm_reset, tpm_used, tpm_reset, held = 0, 0, 0, 0, 0
  if rpm > 0 then
    local step = math.max(math.floor(WINDOW / rpm), 1)
    local tat = tat_of(KEYS[b + 1])
    if tat + step - now > WINDOW then
      refuse(i, 1, rpm, ms(tat + step - now - WINDOW))
      rpm_reset = ms(tat - now)
    else
      rpm_next[i] = tat + step
      rpm_left = math.floor((WINDOW - (tat + step - now)) / step)
      rpm_reset = ms(tat + step - now)
    end
  end
  if tpm > 0 then
    local tat = tat_of(KEYS[b + 2])
    tpm_used = math.ceil((tat - now) / WINDOW * tpm)
    tpm_reset = ms(tat - now)
    if want > tpm then
      refuse(i, 2, tpm_used, -1)
    elseif tpm_used + want > tpm then
      refuse(i, 2, tpm_used, ms((tpm_used + want - tpm) / tpm * WINDOW))
    end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[b + 3], '-inf', now)
    held = redis.call('ZCARD', KEYS[b + 3])
    if held >= conc then refuse(i, 3, held, 1000) end
  end
  for _, v in ipairs({rpm_left, rpm_reset, tpm_used, tpm_reset, held}) do
    table.insert(out, v)
  end
end
if out[1] == 1 then
  for i = 1, n do
    local b = (i - 1) * 3
    if rpm_next[i] then
      local next = rpm_next[i]
      redis.call('SET', KEYS[b + 1], string.format('%.0f', next), 'PX', ms(next - now) + 1)
    end
    if tonumber(ARGV[b + 6]) > 0 then
      redis.call('ZADD', KEYS[b + 3], now + ttl, slot)
      redis.call('PEXPIRE', KEYS[b + 3], ms(ttl))
      out[5 + (i - 1) * 5 + 5] = out[5 + (i - 1) * 5 + 5] + 1
    end
  end
end
return out
"""

# The end of a request: its tokens into each TPM bucket (debt capped), its slot freed.
# KEYS as for the check; ARGV: slot, tokens, then per subject tpm, concurrency.
RELEASE_SCRIPT = """
local WINDOW = 60000000
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local slot, tokens = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS / 3 do
  local b = (i - 1) * 3
  local tpm, conc = tonumber(ARGV[i * 2 + 1]), tonumber(ARGV[i * 2 + 2])
  if tpm > 0 and tokens > 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[b + 2]) or '0'), now)
    tat = math.min(tat + tokens / tpm * WINDOW, now + 2 * WINDOW)
    local px = math.ceil((tat - now) / 1000) + 1
    redis.call('SET', KEYS[b + 2], string.format('%.0f', tat), 'PX', px)
  end
  if conc > 0 then redis.call('ZREM', KEYS[b + 3], slot) end
end
return 1
"""

# A node's heartbeat: its live slots stay live. XX: a slot already judged dead stays dead.
# KEYS: slot sets; ARGV: ttl ms, then the slot held in each set.
RENEW_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local ttl = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + ttl * 1000, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ttl)
end
return 1
"""


@dataclass
class _LoopClient:
    """A redis.asyncio client is bound to the event loop it was made on."""

    client: aioredis.Redis
    check: Any
    release: Any
    renew: Any
    live: dict[str, list[str]]  # slot -> the slot sets holding it
    heartbeat: asyncio.Task[None] | None = None


class RedisStore:
    errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopClient] = (
            weakref.WeakKeyDictionary()
        )

    def _current(self) -> _LoopClient:
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is None:
            # Short timeouts: a stalled Redis must not hold requests (they go on unlimited).
            client = aioredis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
            found = _LoopClient(
                client,
                client.register_script(CHECK_SCRIPT),
                client.register_script(RELEASE_SCRIPT),
                client.register_script(RENEW_SCRIPT),
                {},
            )
            self._loops[loop] = found
        return found

    def keys(self, subjects: Sequence[Subject]) -> list[str]:
        return [
            f"{self.prefix}:ratelimit:{subject.ident}:{part}"
            for subject in subjects
            for part in ("rpm", "tpm", "slots")
        ]

    async def check(self, subjects: Sequence[Subject], slot: str, want: int) -> Sequence[Any]:
        current = self._current()
        keys = self.keys(subjects)
        args: list[Any] = [slot, ratelimit.SLOT_TTL_SECONDS * 1000, want]
        for subject in subjects:
            args += [subject.limits.rpm, subject.limits.tpm, subject.limits.concurrency]
        result = await current.check(keys=keys, args=args)
        if int(result[0]) == 1:
            sets = [keys[i * 3 + 2] for i, s in enumerate(subjects) if s.limits.concurrency]
            if sets:
                self._track(current, slot, sets)
        return result

    async def release(self, subjects: Sequence[Subject], slot: str, tokens: int) -> None:
        current = self._current()
        self._untrack(current, slot)
        args: list[Any] = [slot, tokens]
        for subject in subjects:
            args += [subject.limits.tpm, subject.limits.concurrency]
        await current.release(keys=self.keys(subjects), args=args)

    def _track(self, current: _LoopClient, slot: str, sets: list[str]) -> None:
        current.live[slot] = sets
        if current.heartbeat is None or current.heartbeat.done():
            current.heartbeat = asyncio.get_running_loop().create_task(self._beat(current))

    def _untrack(self, current: _LoopClient, slot: str) -> None:
        current.live.pop(slot, None)
        if not current.live and current.heartbeat is not None:
            current.heartbeat.cancel()  # idle: nothing to renew (and no task left pending)
            current.heartbeat = None

    async def _beat(self, current: _LoopClient) -> None:
        while current.live:
            await asyncio.sleep(ratelimit.SLOT_TTL_SECONDS / 3)
            pairs = [(key, slot) for slot, sets in current.live.items() for key in sets]
            if not pairs:
                continue
            keys = [key for key, _ in pairs]
            try:
                ttl_ms = ratelimit.SLOT_TTL_SECONDS * 1000
                await current.renew(keys=keys, args=[ttl_ms, *(slot for _, slot in pairs)])
            except (redis.RedisError, OSError) as error:
                logger.warning("rate limits: could not renew concurrency slots: %r", error)

    async def close(self) -> None:
        """Close the current loop's client (tests; a server keeps it for its lifetime)."""
        current = self._loops.pop(asyncio.get_running_loop(), None)
        if current is not None:
            if current.heartbeat is not None:
                current.heartbeat.cancel()
            await current.client.aclose()
