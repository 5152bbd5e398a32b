"""The channel monitor's store in Redis: every node counts into the same windows and streaks.

Imported by `relay.monitor.store()` only when `REDIS_CONN_STRING` is set.
"""

from __future__ import annotations

import redis

from relay.monitor import STREAK_TTL_SECONDS, WINDOW_TTL_SECONDS, Window

# Push, trim, and judge in one step, so two nodes can never both act on the same window.
# Returns the number of successes in the full window when it must be disabled, else -1.
_FAILURE_SCRIPT = """
local size = tonumber(ARGV[1])
redis.call('LPUSH', KEYS[1], '0')
redis.call('LTRIM', KEYS[1], 0, size - 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
local results = redis.call('LRANGE', KEYS[1], 0, -1)
if #results < size then
  return -1
end
local successes = 0
for _, value in ipairs(results) do
  if value == '1' then
    successes = successes + 1
  end
end
if successes / size < tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
  return successes
end
return -1
"""


class RedisStore:
    remote = True
    errors: tuple[type[Exception], ...] = (redis.RedisError,)

    def __init__(self, url: str, prefix: str) -> None:
        # Short timeouts: a stalled Redis must cost a lost result, not a pile of threads.
        self.client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        self.prefix = prefix
        self._failure = self.client.register_script(_FAILURE_SCRIPT)

    def window_key(self, channel_id: int) -> str:
        return f"{self.prefix}:monitor:window:{channel_id}"

    def streak_key(self, channel_id: int) -> str:
        return f"{self.prefix}:monitor:streak:{channel_id}"

    def success(self, channel_id: int, window: Window | None, reset_streak: bool) -> None:
        pipe = self.client.pipeline(transaction=False)
        if window is not None:
            key = self.window_key(channel_id)
            pipe.lpush(key, "1")
            pipe.ltrim(key, 0, window.size - 1)
            pipe.expire(key, WINDOW_TTL_SECONDS)
        if reset_streak:
            pipe.delete(self.streak_key(channel_id))
        pipe.execute()

    def failure(self, channel_id: int, window: Window) -> float | None:
        successes = int(
            self._failure(
                keys=[self.window_key(channel_id)],
                args=[window.size, repr(window.threshold), WINDOW_TTL_SECONDS],
            )
        )
        return None if successes < 0 else successes / window.size

    def strike(self, channel_id: int) -> int:
        key = self.streak_key(channel_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, STREAK_TTL_SECONDS)
        streak, _ = pipe.execute()
        return int(streak)

    def forget(self, channel_id: int) -> None:
        self.client.delete(self.window_key(channel_id), self.streak_key(channel_id))
