"""The quota ledger shared by every node through Redis (when `REDIS_CONN_STRING` is set).

`billing.ledger.Ledger` decides reservations from one process's view: requests in flight on
other nodes, and their charges not yet written back, are invisible to it, so N nodes could
each let one request run "alone" on the same nearly spent balance. Here the decision is one
Lua script over a Redis hash per balance (`<prefix>:ledger:u:<id>` / `...:k:<id>`):

- `stored`: the database value, a cache that any node may reload (see `refresh`);
- `p:<writer>`: charges journaled by that writer and not yet applied to the database;
- `r:<node>`, `o:<node>`, `n:<node>`: that node's reservations, estimates and requests in
  flight.

Every field except `stored` is one node's exact local state (kept by the `Ledger` this class
extends), so a node can always re-assert it after Redis lost it (`reassert`, run by the
write-back every few seconds). Fields of a node whose heartbeat key has expired are dropped
by the next reservation: its requests died with it. Its `p:` fields stay, since they are real
charges in its journal, until the journal's recovery applies them (`applied` with that
journal's writer id).

Moving charges from `p:<writer>` into `stored` races with reloads of `stored` from the
database: a reload reading the database between a write-back's commit and its Redis update
would count the charge twice. So a write-back marks the balances (`applying`) before it
commits and bumps `gen` after; a reload reads `gen` before the database and stores its value
only if `gen` is unchanged and nothing is being applied (else it retries later).

When Redis is unreachable, every node falls back to its own `Ledger` (bounded per node, as
without Redis), logs it, and re-asserts its fields once Redis is back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping

import redis

from billing.ledger import (
    KEY,
    USER,
    BalancesMissing,
    Ledger,
    MustWait,
    Reservation,
    insufficient_key_quota,
    insufficient_user_quota,
)

logger = logging.getLogger(__name__)

APPLYING_TTL_SECONDS = 60  # a write-back that died between mark and update blocks reloads so long
HEARTBEAT_TTL_SECONDS = 15

# Sums the live fields of one hash; drops the in-flight fields of nodes without a heartbeat.
_STATE = """
local function state(hash, heartbeat_prefix, self_node)
  local flat = redis.call('HGETALL', hash)
  local fields = {}
  for i = 1, #flat, 2 do fields[flat[i]] = tonumber(flat[i + 1]) end
  if fields['stored'] == nil then return nil end
  local s = {stored = fields['stored'], pending = 0, reserved = 0, outstanding = 0, inflight = 0}
  local dead = {}
  for name, value in pairs(fields) do
    local kind, node = string.match(name, '^(%a):(.+)$')
    if kind == 'p' then
      s.pending = s.pending + value
    elseif kind == 'n' then
      if node ~= self_node and redis.call('EXISTS', heartbeat_prefix .. node) == 0 then
        table.insert(dead, node)
      else
        s.inflight = s.inflight + value
        s.reserved = s.reserved + (fields['r:' .. node] or 0)
        s.outstanding = s.outstanding + (fields['o:' .. node] or 0)
      end
    end
  end
  for _, node in ipairs(dead) do
    redis.call('HDEL', hash, 'n:' .. node, 'r:' .. node, 'o:' .. node)
  end
  return s
end
"""

# KEYS: user hash [, key hash]; ARGV: node, amount, estimate, heartbeat prefix.
# Returns 0 taken, 1/2 user/key hash missing, 3/4 user/key quota short, 5 must wait.
RESERVE = (
    _STATE
    + """
local node, amount, estimate = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local states = {}
for i, hash in ipairs(KEYS) do
  local s = state(hash, ARGV[4], node)
  if s == nil then return i end
  local available = s.stored - s.pending - s.reserved
  if available - amount < 0 or available <= 0 then return 2 + i end
  states[i] = s
end
for i, s in ipairs(states) do
  if s.inflight > 0 and s.stored - s.pending - s.outstanding < estimate then return 5 end
end
for _, hash in ipairs(KEYS) do
  redis.call('HINCRBY', hash, 'r:' .. node, amount)
  redis.call('HINCRBY', hash, 'o:' .. node, estimate)
  redis.call('HINCRBY', hash, 'n:' .. node, 1)
end
return 0
"""
)

# KEYS: user hash [, key hash]; ARGV: node, writer, amount, estimate, charged.
SETTLE = """
for _, hash in ipairs(KEYS) do
  redis.call('HINCRBY', hash, 'r:' .. ARGV[1], -tonumber(ARGV[3]))
  redis.call('HINCRBY', hash, 'o:' .. ARGV[1], -tonumber(ARGV[4]))
  redis.call('HINCRBY', hash, 'n:' .. ARGV[1], -1)
  if tonumber(ARGV[5]) ~= 0 then redis.call('HINCRBY', hash, 'p:' .. ARGV[2], ARGV[5]) end
end
return 0
"""

# KEYS: hashes; ARGV: ttl. Marks them as being applied (before the database commit).
APPLY_BEGIN = """
for _, hash in ipairs(KEYS) do
  redis.call('INCR', hash .. ':applying')
  redis.call('EXPIRE', hash .. ':applying', ARGV[1])
end
return 0
"""

# KEYS: hashes; ARGV: writer, then one charge per hash (0 for an aborted apply).
APPLY_END = """
for i, hash in ipairs(KEYS) do
  local charged = tonumber(ARGV[i + 1])
  if charged ~= 0 then
    if redis.call('HEXISTS', hash, 'stored') == 1 then
      redis.call('HINCRBY', hash, 'stored', -charged)
    end
    if redis.call('HINCRBY', hash, 'p:' .. ARGV[1], -charged) == 0 then
      redis.call('HDEL', hash, 'p:' .. ARGV[1])
    end
    redis.call('HINCRBY', hash, 'gen', 1)
  end
  if redis.call('DECR', hash .. ':applying') <= 0 then redis.call('DEL', hash .. ':applying') end
end
return 0
"""

# KEYS: hashes. Returns each hash's `gen`, or -1 while it is being applied.
RELOAD_BEGIN = """
local result = {}
for i, hash in ipairs(KEYS) do
  if tonumber(redis.call('GET', hash .. ':applying') or '0') > 0 then
    result[i] = -1
  else
    result[i] = tonumber(redis.call('HGET', hash, 'gen') or '0')
  end
end
return result
"""

# KEYS: hashes; ARGV: pairs of (gen, value). Stores each value whose hash did not move since.
RELOAD_END = """
local stored = {}
for i, hash in ipairs(KEYS) do
  local gen = tonumber(ARGV[2 * i - 1])
  local now = tonumber(redis.call('HGET', hash, 'gen') or '0')
  local busy = tonumber(redis.call('GET', hash .. ':applying') or '0') > 0
  if gen >= 0 and gen == now and not busy then
    redis.call('HSET', hash, 'stored', ARGV[2 * i])
    stored[i] = 1
  else
    stored[i] = 0
  end
end
return stored
"""


class SharedLedger(Ledger):
    """A `Ledger` whose reservations are decided in Redis across all nodes."""

    def __init__(
        self, client: redis.Redis, prefix: str, node: str, writer: str | None = None
    ) -> None:
        super().__init__()
        self.client = client
        self.prefix = f"{prefix}:ledger"
        self.node = node
        self.writer = writer or node
        self.heartbeat_prefix = f"{self.prefix}:node:"
        self._reserve = client.register_script(RESERVE)
        self._settle = client.register_script(SETTLE)
        self._apply_begin = client.register_script(APPLY_BEGIN)
        self._apply_end = client.register_script(APPLY_END)
        self._reload_begin = client.register_script(RELOAD_BEGIN)
        self._reload_end = client.register_script(RELOAD_END)
        self._degraded = False

    def hash_name(self, kind: str, balance_id: int) -> str:
        return f"{self.prefix}:{kind}:{balance_id}"

    def _lost_redis(self, error: Exception) -> None:
        if not self._degraded:
            logger.warning("shared ledger unreachable, deciding on this node alone: %s", error)
        self._degraded = True

    # --- the request path ----------------------------------------------------------------
    def reserve(
        self, user_id: int, key_id: int | None, amount: int, estimate: int | None = None
    ) -> Reservation:
        """As `Ledger.reserve`, over every node's reservations and pending charges. Raises
        `BalancesMissing` when Redis has no copy of a balance yet (reload it, then retry)."""
        amount = max(amount, 0)
        estimate = max(estimate if estimate is not None else amount, amount)
        keys = [self.hash_name(USER, user_id)]
        if key_id is not None:
            keys.append(self.hash_name(KEY, key_id))
        with self._lock:
            if self._degraded:
                return super().reserve(user_id, key_id, amount, estimate)
            try:
                verdict = int(
                    self._reserve(keys, [self.node, amount, estimate, self.heartbeat_prefix])
                )
            except redis.RedisError as error:
                self._lost_redis(error)
                return super().reserve(user_id, key_id, amount, estimate)
            if verdict == 1:
                raise BalancesMissing(users=[user_id])
            if verdict == 2:
                raise BalancesMissing(keys=[key_id] if key_id is not None else [])
            if verdict == 3:
                raise insufficient_user_quota()
            if verdict == 4:
                raise insufficient_key_quota()
            if verdict == 5:
                raise MustWait
            self._users[user_id].take(amount, estimate)
            if key_id is not None:
                self._keys[key_id].take(amount, estimate)
        return Reservation(user_id, key_id, amount, estimate)

    def settle(self, reservation: Reservation, charged: int) -> None:
        keys = [self.hash_name(USER, reservation.user_id)]
        if reservation.key_id is not None:
            keys.append(self.hash_name(KEY, reservation.key_id))
        with self._lock:
            self._users[reservation.user_id].give_back(reservation, charged)
            if reservation.key_id is not None:
                self._keys[reservation.key_id].give_back(reservation, charged)
            if self._degraded:
                return
            try:
                self._settle(
                    keys,
                    [self.node, self.writer, reservation.amount, reservation.estimate, charged],
                )
            except redis.RedisError as error:
                # The charge is journaled and in our own ledger; `reassert` restores Redis.
                self._lost_redis(error)

    # --- write-back ------------------------------------------------------------------------
    def _charged_hashes(
        self, user_charges: Mapping[int, int], key_charges: Mapping[int, int]
    ) -> tuple[list[str], list[int]]:
        names = [self.hash_name(USER, i) for i in user_charges]
        names += [self.hash_name(KEY, i) for i in key_charges]
        return names, [*user_charges.values(), *key_charges.values()]

    def applying(self, user_charges: Mapping[int, int], key_charges: Mapping[int, int]) -> None:
        """Before the database commit of these charges: hold off reloads of `stored`."""
        names, _ = self._charged_hashes(user_charges, key_charges)
        if names and not self._degraded:
            try:
                self._apply_begin(names, [APPLYING_TTL_SECONDS])
            except redis.RedisError as error:
                self._lost_redis(error)

    def applied(
        self,
        user_charges: dict[int, int],
        key_charges: dict[int, int],
        writer: str | None = None,
    ) -> None:
        """After the commit: move the charges from `p:<writer>` into `stored`, here and in
        our own ledger (where another, dead, writer's charges only lower `stored`)."""
        ours = writer is None or writer == self.writer
        with self._lock:
            super().applied(user_charges, key_charges, None if ours else writer)
            self._end_apply(user_charges, key_charges, writer or self.writer)

    def aborted(self, user_charges: Mapping[int, int], key_charges: Mapping[int, int]) -> None:
        """The commit failed: lift the marks, change nothing."""
        with self._lock:
            self._end_apply(
                dict.fromkeys(user_charges, 0), dict.fromkeys(key_charges, 0), self.writer
            )

    def _end_apply(
        self, user_charges: Mapping[int, int], key_charges: Mapping[int, int], writer: str
    ) -> None:
        names, charges = self._charged_hashes(user_charges, key_charges)
        if not names or self._degraded:
            return
        try:
            self._apply_end(names, [writer, *charges])
        except redis.RedisError as error:
            self._lost_redis(error)

    # --- reloads from the database ---------------------------------------------------------
    def refresh(
        self,
        kind: str,
        ids: Iterable[int],
        read: Callable[[list[int]], Mapping[int, int]],
    ) -> set[int]:
        """Reload `stored` from the database (`read` returns id → value) in Redis and in our
        own ledger. Returns the ids whose Redis copy could not be stored (a write-back was
        under way): the caller retries them."""
        wanted = list(ids)
        if not wanted:
            return set()
        names = [self.hash_name(kind, i) for i in wanted]
        gens: list[int] | None = None
        if not self._degraded:
            try:
                gens = [int(g) for g in self._reload_begin(names)]
            except redis.RedisError as error:
                self._lost_redis(error)
        values = read(wanted)
        load = self.load_user if kind == USER else self.load_key
        for balance_id in wanted:
            load(balance_id, values.get(balance_id, 0))
        if gens is None:
            return set()
        args: list[int] = []
        for balance_id, gen in zip(wanted, gens, strict=True):
            args += [gen, values.get(balance_id, 0)]
        try:
            stored = self._reload_end(names, args)
        except redis.RedisError as error:
            self._lost_redis(error)
            return set()
        return {i for i, ok in zip(wanted, stored, strict=True) if not int(ok)}

    # --- upkeep ----------------------------------------------------------------------------
    def heartbeat_and_reassert(self, ttl: int = HEARTBEAT_TTL_SECONDS) -> bool:
        """Keep this node's heartbeat, and write our exact fields into every hash we know
        (after an outage, or a Redis that restarted empty). Returns whether Redis answered;
        balances whose hash lost `stored` are reported by `missing_balances`."""
        try:
            with self._lock:
                pipe = self.client.pipeline(transaction=False)
                pipe.set(self.heartbeat_prefix + self.node, 1, ex=ttl)
                for kind, table in ((USER, self._users), (KEY, self._keys)):
                    for balance_id, balance in table.items():
                        name = self.hash_name(kind, balance_id)
                        mine = {
                            f"p:{self.writer}": balance.pending,
                            f"r:{self.node}": balance.reserved,
                            f"o:{self.node}": balance.outstanding,
                            f"n:{self.node}": balance.in_flight,
                        }
                        zero = [field for field, value in mine.items() if value == 0]
                        if zero:
                            pipe.hdel(name, *zero)
                        rest = {field: value for field, value in mine.items() if value != 0}
                        if rest:
                            pipe.hset(name, mapping=rest)
                pipe.execute()
                if self._degraded:
                    logger.warning("shared ledger reachable again")
                self._degraded = False
            return True
        except redis.RedisError as error:
            self._lost_redis(error)
            return False

    def missing_balances(self) -> tuple[list[int], list[int]]:
        """Known balances whose Redis hash has no `stored` (Redis restarted or evicted it)."""
        with self._lock:
            users, keys = list(self._users), list(self._keys)
        pipe = self.client.pipeline(transaction=False)
        for user_id in users:
            pipe.hexists(self.hash_name(USER, user_id), "stored")
        for key_id in keys:
            pipe.hexists(self.hash_name(KEY, key_id), "stored")
        found = pipe.execute()
        missing_users = [i for i, ok in zip(users, found[: len(users)], strict=True) if not ok]
        missing_keys = [i for i, ok in zip(keys, found[len(users) :], strict=True) if not ok]
        return missing_users, missing_keys

    def forget_writer(self, writer: str, users: Iterable[int], keys: Iterable[int]) -> None:
        """A dead writer's journal is fully applied: drop what is left of its `p:` fields."""
        pipe = self.client.pipeline(transaction=False)
        for user_id in users:
            pipe.hdel(self.hash_name(USER, user_id), f"p:{writer}")
        for key_id in keys:
            pipe.hdel(self.hash_name(KEY, key_id), f"p:{writer}")
        pipe.execute()

    def stop(self) -> None:
        """A clean stop: this node's in-flight fields go at once, not after the heartbeat."""
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.heartbeat_prefix + self.node)
