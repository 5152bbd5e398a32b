"""Redis pub/sub for cache invalidations: every node hears a write within milliseconds.

The `cache_events` table stays the source of truth (a node that was disconnected catches up
from it); with Redis configured the same events are also published, so a disabled channel
or a banned key stops being served by every node at once instead of at the next poll.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings

from oneapi import caching

# The client is imported where Redis is configured: a node without it never loads it (~7 MB).
if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

_client: redis.Redis | None = None
_client_lock = threading.Lock()


def channel_name() -> str:
    return f"{settings.CACHE_KEY_PREFIX}:cache-events"


def encode(kind: str, ident: str) -> str:
    return f"{kind}\n{ident}"


def decode(message: bytes | str) -> tuple[str, str]:
    text = message.decode() if isinstance(message, bytes) else message
    kind, _, ident = text.partition("\n")
    return kind, ident


def _redis(url: str) -> redis.Redis:
    import redis

    global _client
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return _client


def publish(kind: str, ident: str, url: str | None = None) -> None:
    """Best effort: a lost message is caught up by the table poll."""
    url = url or settings.REDIS_CONN_STRING
    if not url:
        return
    import redis

    try:
        _redis(url).publish(channel_name(), encode(kind, ident))
    except redis.RedisError:
        logger.warning("could not publish cache event %s:%s", kind, ident, exc_info=True)


class Subscriber(threading.Thread):
    """Runs the local handlers for every published event; reconnects after failures."""

    def __init__(self, url: str) -> None:
        super().__init__(name="oneapi-cache-bus", daemon=True)
        self.url = url
        self._stopped = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        import redis

        while not self._stopped.is_set():
            try:
                self._listen()
            except redis.RedisError:
                logger.warning("cache event subscription lost; reconnecting", exc_info=True)
                time.sleep(1)

    def _listen(self) -> None:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=2)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(channel_name())
            self.ready.set()
            while not self._stopped.is_set():
                message = pubsub.get_message(timeout=0.5)
                if message and message.get("type") == "message":
                    caching.run_handlers(*decode(message["data"]))
        finally:
            pubsub.close()
            client.close()


_subscriber: Subscriber | None = None


def start_subscriber() -> Subscriber | None:
    global _subscriber
    if not settings.REDIS_CONN_STRING:
        return None
    with _client_lock:
        if _subscriber is None or not _subscriber.is_alive():
            _subscriber = Subscriber(settings.REDIS_CONN_STRING)
            _subscriber.start()
        return _subscriber
